"""Example files to try the service with: digits as .npz and a small CNN trained on it.

    python -m compression.examples examples/

Everything comes from packaged data (sklearn's 8x8 digits) and trains in seconds on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from compression import zoo
from compression.data import Dataset
from compression.io import export_pt2
from compression.training import fit


def write_examples(directory: Path, epochs: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """Write ``digits.npz`` and ``digits_cnn.pt2`` into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    bunch = load_digits()
    x = (bunch.images[:, None] / 16.0).astype(np.float32)
    data_path = directory / "digits.npz"
    np.savez(data_path, x=x, y=bunch.target.astype(np.int64))
    data = Dataset(torch.from_numpy(x), torch.from_numpy(bunch.target), tuple(map(str, range(10))))
    torch.manual_seed(seed)
    model, _ = zoo.build("small_cnn")
    fit(model, data, epochs=epochs, seed=seed)
    model_path = directory / "digits_cnn.pt2"
    export_pt2(model, data.x[:2], model_path)
    return model_path, data_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    for path in write_examples(parser.parse_args().directory):
        print(path)


if __name__ == "__main__":
    main()
