"""Regenerate the README's report screenshot from the current code.

    python docs/readme_screenshot.py          # or: make screenshot

Runs the README tour's job on the example files (digits and the small CNN from
``compression.examples``) with the engine, renders its report.html exactly as the worker does
(``compression.report``), and photographs the top of the page with headless Chromium
(Debian's ``chromium``). Writes ``docs/report-example.html`` and ``docs/report.png``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from compression import Spec, compress, load_dataset, load_model
from compression.data import fit_to_model
from compression.examples import write_examples
from compression.report import relevance_samples, render_report

DOCS = Path(__file__).resolve().parent
TOUR_STEPS = [
    {"type": "prune_filters", "ratio": 0.5},
    {"type": "prune_weights", "sparsity": 0.9, "layers": ["fc1"]},
]
"""The job of the README's five-minute tour."""


def write_report(html_path: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        model_path, data_path = write_examples(Path(folder) / "examples")
        model = load_model(str(model_path))
        data = load_dataset(str(data_path), model.input_shape)
        spec = Spec(steps=TOUR_STEPS)
        out = Path(folder) / "out"
        out.mkdir()
        result = compress(model, data, spec, onnx_dir=out)
        shown = fit_to_model(data, model.input_shape, model.num_classes)
        samples = relevance_samples(
            model.module, result.model.module, shown,
            baseline=spec.attribution.baseline, target=spec.attribution.deeplift_target,
        )  # fmt: skip
    html = render_report(
        result.metrics, samples, title="Compression report: the README tour's job",
        spec=spec.model_dump(mode="json"),
    )  # fmt: skip
    html_path.write_text(html, encoding="utf-8")


def photograph(html_path: Path, png_path: Path, width: int, height: int) -> None:
    browser = next(
        (path for name in ("chromium", "chromium-browser", "google-chrome")
         if (path := shutil.which(name))),
        None,
    )  # fmt: skip
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={width},{height}", f"--screenshot={png_path}", html_path.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=2300)
    args = parser.parse_args()
    html_path, png_path = DOCS / "report-example.html", DOCS / "report.png"
    write_report(html_path)
    photograph(html_path, png_path, args.width, args.height)
    print(f"wrote {html_path.relative_to(DOCS.parent)} and {png_path.relative_to(DOCS.parent)}")


if __name__ == "__main__":
    main()
