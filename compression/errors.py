"""Typed errors with stable codes.

Every error a user can cause carries a ``code`` that never changes between releases, so the
service can map it to an RFC 9457 problem and a client can branch on it. Messages say what to
do instead, not only what went wrong.
"""

from __future__ import annotations


class CompressionError(Exception):
    """Base of every error the library raises on purpose."""

    code = "compression_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedFormat(CompressionError):
    """The file is not one of the accepted model or dataset formats."""

    code = "unsupported_format"


class InvalidModel(CompressionError):
    """The file has an accepted format but does not hold a usable model."""

    code = "invalid_model"


class UnsupportedOperator(CompressionError):
    """The model uses an operator the engine cannot convert, prune or export."""

    code = "unsupported_operator"


class ShapeMismatch(CompressionError):
    """Data or weights do not fit the shape the model expects."""

    code = "shape_mismatch"


class InvalidDataset(CompressionError):
    """The dataset is readable but unusable (bad labels, NaN, empty classes...)."""

    code = "invalid_dataset"


class UnsafeArchive(CompressionError):
    """An archive tries path traversal, links, or expands beyond the allowed size."""

    code = "unsafe_archive"


class LimitExceeded(CompressionError):
    """A size the file declares (input elements, parameters, pixels, decoded bytes) is above
    a limit the operator set; the message names the limit."""

    code = "limit_exceeded"


class InvalidSpec(CompressionError):
    """The compression spec is valid JSON but cannot be applied to this model."""

    code = "invalid_spec"


class PruningFailed(CompressionError):
    """The pruned model no longer runs, usually a hard-coded shape in the graph."""

    code = "pruning_failed"


class ExportFailed(CompressionError):
    """Export failed or the exported model does not match the torch model."""

    code = "export_failed"


class Cancelled(CompressionError):
    """The caller asked to stop; raised at the next cancellation check."""

    code = "cancelled"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed: Python's ``MemoryError``, or torch's
    allocator refusing (a plain ``RuntimeError`` on the CPU, ``OutOfMemoryError`` on CUDA).
    A task under a memory limit reports these as ``resource_limit``, not as a bug."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


class TimeLimitReached(BaseException):
    """The task's soft time limit passed (raised by a timer in the task's process).

    A ``BaseException``, like ``KeyboardInterrupt``: the engine turns ordinary exceptions
    from a file's readers into "this file is invalid", and a deadline met while reading a
    file says nothing about the file."""
