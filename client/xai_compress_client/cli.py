"""xai-compress: upload models and data, run compression jobs, fetch the results.

  xai-compress upload model digits_cnn.pt2
  xai-compress upload dataset digits.npz
  xai-compress submit --model MODEL_ID --dataset DATASET_ID --prune-filters 0.5 --wait
  xai-compress download JOB_ID out/

The server and key come from XAI_COMPRESS_URL (default http://127.0.0.1:8000) and
XAI_COMPRESS_API_KEY. Output is for people; --json prints the API's objects instead.

exit codes:
  0  success (for wait and submit --wait: the job succeeded)
  1  the job failed
  2  usage error
  3  the job was cancelled
  4  the wait timed out (the job keeps running)
  5  API or network error; the message on stderr names the problem's code
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from xai_compress_client.client import Client
from xai_compress_client.errors import JobCancelled, JobFailed, WaitTimeout, XaiCompressError
from xai_compress_client.jobs import Job
from xai_compress_client.objects import Upload, to_dict

EXIT_CODES: dict[type[XaiCompressError], int] = {JobFailed: 1, JobCancelled: 3, WaitTimeout: 4}
API_ERROR = 5
MAX_PAGE = 100

STEP_FLAGS = (  # flag, step type, the step's field, value type, help; steps run in this order
    ("--prune-filters", "prune_filters", "ratio", float, "remove this fraction of filters"),
    ("--prune-weights", "prune_weights", "sparsity", float, "zero this fraction of weights"),
    ("--share-weights", "share_weights", "clusters", int, "K shared values per layer"),
    ("--quantize-bits", "quantize_mixed", "average_bits", float, "average bits per weight"),
    ("--finetune", "finetune", "epochs", int, "fine-tune for this many epochs"),
)

Handler = Callable[[Client, argparse.Namespace], int]


class UsageError(Exception):
    """Arguments argparse accepted that still do not make sense together."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with Client() as client:
            handler: Handler = args.run
            return handler(client, args)
    except UsageError as exc:
        parser.error(str(exc))
    except XaiCompressError as exc:
        print(f"xai-compress: {exc}", file=sys.stderr)
        return EXIT_CODES.get(type(exc), API_ERROR)


def build_parser() -> argparse.ArgumentParser:
    intro, _, epilog = __doc__.partition("exit codes:")
    parser = argparse.ArgumentParser(
        prog="xai-compress",
        description=intro.strip(),
        epilog="exit codes:" + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    # --json is accepted after the command too; SUPPRESS keeps the value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(group: Any, name: str, run: Handler, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, parents=[common], help=help_text)
        sub.set_defaults(run=run)
        return sub

    upload = commands.add_parser("upload", help="upload a model or a dataset")
    kinds = upload.add_subparsers(dest="kind", required=True, metavar="KIND")
    model = command(kinds, "model", _upload, "upload a .pt2, ONNX or safetensors model")
    dataset = command(kinds, "dataset", _upload, "upload an .npz or a zip/tar of class folders")
    for sub in (model, dataset):
        sub.add_argument("path", type=_existing_file, metavar="PATH")
        sub.add_argument("--name", help="a display name (default: the file name)")
    model.add_argument("--architecture", help="built-in architecture of safetensors weights")
    model.add_argument("--architecture-args", type=_json_object, metavar="JSON")

    submit = command(commands, "submit", _submit, "submit a compression job")
    submit.add_argument("--model", required=True, metavar="ID")
    submit.add_argument("--dataset", required=True, metavar="ID")
    submit.add_argument("--spec", type=_json_file, metavar="FILE.json", help="the job's Spec")
    steps = submit.add_argument_group("steps from flags (instead of --spec; run in this order)")
    for flag, step, field, kind_of_value, help_text in STEP_FLAGS:
        steps.add_argument(
            flag, dest=step, type=kind_of_value, metavar=field.upper(), help=help_text
        )
    steps.add_argument("--layers", type=_names, metavar="L1,L2", help="layers for --prune-weights")
    steps.add_argument("--criterion", help="deeplift (default), auto, l1, taylor or random")
    submit.add_argument("--wait", action="store_true", help="wait, and exit by the job's outcome")
    submit.add_argument(
        "--idempotency-key", metavar="K", help="resubmitting with K returns the job"
    )

    command(commands, "status", _status, "show a job").add_argument("job", metavar="JOB")
    wait = command(commands, "wait", _wait, "wait for a job to finish")
    wait.add_argument("job", metavar="JOB")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")
    download = command(
        commands, "download", _download, "download a job's artifacts, sha256-checked"
    )
    download.add_argument("job", metavar="JOB")
    download.add_argument("directory", type=Path, metavar="DIR")
    download.add_argument("--name", action="append", dest="names", metavar="NAME")
    listing = command(commands, "list", _list, "list models, datasets or jobs, newest first")
    listing.add_argument("kind", choices=("models", "datasets", "jobs"))
    listing.add_argument("--status", help="only jobs with this status")
    listing.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="at most N")
    command(commands, "cancel", _cancel, "cancel a job (idempotent)").add_argument(
        "job", metavar="JOB"
    )
    return parser


def _upload(client: Client, args: argparse.Namespace) -> int:
    if args.kind == "model":
        record: Upload = client.models.upload(
            args.path,
            name=args.name,
            architecture=args.architecture,
            architecture_args=args.architecture_args,
        )
    else:
        record = client.datasets.upload(args.path, name=args.name)
    return _emit(args, record, _upload_row(record))


def _submit(client: Client, args: argparse.Namespace) -> int:
    job = client.jobs.create(
        args.model, args.dataset, idempotency_key=args.idempotency_key, **_spec(args)
    )
    return _wait_for(args, job, timeout=None) if args.wait else _emit(args, job, _job_text(job))


def _status(client: Client, args: argparse.Namespace) -> int:
    job = client.jobs.get(args.job)
    return _emit(args, job, _job_text(job))


def _wait(client: Client, args: argparse.Namespace) -> int:
    return _wait_for(args, client.jobs.get(args.job), timeout=args.timeout)


def _download(client: Client, args: argparse.Namespace) -> int:
    paths = client.jobs.get(args.job).download(args.directory, names=args.names)
    text = "\n".join(map(str, paths)) or "no artifacts: the job has not succeeded"
    return _emit(args, [str(path) for path in paths], text)


def _list(client: Client, args: argparse.Namespace) -> int:
    page_size = min(args.limit, MAX_PAGE)
    if args.kind == "jobs":
        items: Any = client.jobs.list(status=args.status, limit=page_size)
        row: Callable[[Any], str] = _job_row
    elif args.status:
        raise UsageError("--status applies to jobs only")
    else:
        items = getattr(client, args.kind).list(limit=page_size)
        row = _upload_row
    shown = list(islice(items, args.limit))
    return _emit(args, shown, "\n".join(map(row, shown)) or f"no {args.kind}")


def _cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.jobs.get(args.job).cancel()
    return _emit(args, job, _job_text(job))


def _wait_for(args: argparse.Namespace, job: Job, timeout: float | None) -> int:
    """Wait; show the job however it ended, then let main turn the outcome into the exit code."""
    try:
        job.wait(timeout=timeout)
    except (JobFailed, JobCancelled, WaitTimeout):
        _emit(args, job, _job_text(job))
        raise
    return _emit(args, job, _job_text(job))


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    """The Spec fields of a submit: the --spec file, or steps assembled from the flags."""
    steps = [
        {"type": step, field: getattr(args, step)}
        for _, step, field, _, _ in STEP_FLAGS
        if getattr(args, step) is not None
    ]
    if args.layers:
        if args.prune_weights is None:
            raise UsageError("--layers applies to --prune-weights")
        next(step for step in steps if step["type"] == "prune_weights")["layers"] = args.layers
    if args.spec is not None and steps:
        raise UsageError("give --spec or step flags, not both")
    if args.spec is None and not steps:
        raise UsageError("give --spec FILE.json or at least one step flag")
    spec = dict(args.spec) if args.spec is not None else {"steps": steps}
    if "steps" not in spec:
        raise UsageError("the --spec file has no 'steps'")
    if args.criterion:
        spec["criterion"] = args.criterion
    return spec


def _emit(args: argparse.Namespace, value: Any, text: str) -> int:
    print(json.dumps(to_dict(value), indent=2) if args.json else text)
    return 0


def _upload_row(record: Upload) -> str:
    problem = f"  {record.error.code}: {record.error.message}" if record.error else ""
    return f"{record.id}  {record.status:<8} {record.name}  ({record.size_bytes} bytes){problem}"


def _job_row(job: Job) -> str:
    return f"{job.id}  {job.status:<10} {job.progress:4.0%}  {job.created_at:%Y-%m-%d %H:%M:%S}"


def _job_text(job: Job) -> str:
    lines = [f"{job.id}  {job.status}"]
    if not job.done:
        eta = "" if job.eta_seconds is None else f", ETA {job.eta_seconds:.0f} s"
        lines.append(f"  stage      {job.stage or '-'} ({job.progress:.0%}{eta})")
    if job.error:
        lines.append(f"  error      {job.error.code}: {job.error.message}")
    metrics = job.metrics or {}
    accuracy = [metrics.get(when, {}).get("accuracy") for when in ("before", "after")]
    if None not in accuracy:
        lines.append(f"  accuracy   {accuracy[0]:.4f} -> {accuracy[1]:.4f}")
    ratios = [
        f"{name} {value:.2f}x" if value is not None else f"{name} within noise"
        for name, value in metrics.get("reduction", {}).items()
    ]
    if ratios:
        lines.append(f"  reduction  {', '.join(ratios)}")
    return "\n".join(lines)


def _existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return path


def _json_file(value: str) -> dict[str, Any]:
    return _json_object(_existing_file(value).read_text())


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return parsed


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number
