"""Load a ``torch.export`` archive (.pt2) without running any code from the file.

The archive is vetted first by ``pt2_vetting`` (torch's own zip reader, every entry torch
will read, nothing that runs code); it is then read by the archive loader that was vetted,
``torch.export.pt2_archive._package.load_pt2``, not by ``torch.export.load``, which on a
reader error falls back to a legacy format that unpickles other members without restriction.
"""

from __future__ import annotations

import io
import math

from torch import fx
from torch.export.pt2_archive._package import load_pt2 as read_pt2_archive

from compression.errors import CompressionError, InvalidModel, UnsupportedFormat, is_out_of_memory
from compression.intake_limits import DEFAULT_LIMITS, IntakeLimits, check
from compression.io.fx_flatten import normalize_flattens
from compression.io.fx_lift import lift_modules
from compression.io.loaded import LoadedModel
from compression.io.probe import probe_classifier
from compression.io.pt2_vetting import vet_pt2


def _input_shape(gm: fx.GraphModule) -> tuple[int, ...]:
    placeholders = [node for node in gm.graph.nodes if node.op == "placeholder"]
    if len(placeholders) != 1:
        raise InvalidModel(
            f"the exported model takes {len(placeholders)} inputs; exactly one input tensor "
            "(a batch of samples) is supported"
        )
    value = placeholders[0].meta.get("val")
    if value is None:
        raise InvalidModel("the exported graph does not record its input shape")
    dims = tuple(value.shape[1:])
    if not all(isinstance(dim, int) for dim in dims):
        raise InvalidModel(
            "only the batch dimension may be dynamic; export with fixed sample dimensions"
        )
    return dims


def load_exported(
    source: str | bytes,
    what: str,
    limits: IntakeLimits = DEFAULT_LIMITS,
    bad_zip: type[CompressionError] = UnsupportedFormat,
) -> fx.GraphModule:
    """A vetted torch.export archive as a plain GraphModule with its layers lifted into
    modules; ``what`` names the archive in error messages."""

    def stream() -> str | io.BytesIO:
        return io.BytesIO(source) if isinstance(source, bytes) else source

    try:
        vet_pt2(source, limits)
    except UnsupportedFormat as exc:
        raise bad_zip(f"{what} is not a valid zip archive") from exc
    try:
        programs = read_pt2_archive(stream()).exported_programs
        gm = programs["model"].module()
    except Exception as exc:
        if is_out_of_memory(exc):  # the task's memory limit, not a bad file
            raise
        raise InvalidModel(f"torch.export could not load {what}: {exc}") from exc
    return fx.GraphModule(lift_modules(gm), gm.graph)  # a plain GraphModule: eval() works


def load_pt2(path: str, limits: IntakeLimits = DEFAULT_LIMITS) -> LoadedModel:
    """Load an ExportedProgram archive and lift it into a module-based graph."""
    gm = load_exported(path, "the .pt2 file", limits)
    input_shape = _input_shape(gm)
    check(limits, "max_input_elements", math.prod(input_shape), "the elements of one input sample")
    loaded = LoadedModel(gm.eval(), input_shape, probe_classifier(gm, input_shape), "pt2")
    normalize_flattens(gm, loaded.example_input())
    return loaded
