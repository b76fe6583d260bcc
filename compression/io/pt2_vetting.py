"""Vet a torch.export archive exactly as torch will read it, before torch reads it.

``torch.export.load`` is not safe on a stranger's file: it unpickles some members with
``weights_only=False``, parses symbolic shapes with ``sympy.sympify`` (which calls ``eval``),
and, when its archive reader fails, retries with a legacy reader that unpickles other members.
What it reads is decided by its own zip reader (miniz, behind ``torch._C.PyTorchFileReader``),
not Python's ``zipfile``: a name stored twice resolves to the last copy in ``zipfile`` and,
depending on where the binary search over the sorted directory lands, to another copy in
miniz, which also compares names without regard to case. Vetting one copy and loading
another ran a payload.

So the vetting here

1. reads the central directory with ``zipfile`` and refuses repeated names (also under case
   folding), names that are not plain relative paths inside the one top folder, encrypted or
   unknown compression, and sizes beyond the limits (total, per-member inflation, JSON
   members);
2. opens the same file with torch's own reader and requires it to list exactly the same
   members, in the same order, with the same sizes;
3. reads through that reader every entry ``torch/export/pt2_archive/_package.py`` reads, by
   the same rules: each ``models/<name>.json`` with its sample inputs, weights and constants
   (legacy files or configs, parsed with torch's own dataclass reader) and every member
   those configs point at;
4. refuses anything that would run code: compiled AOTInductor members, custom and opaque
   objects, pickles the restricted unpickler refuses (so torch's unrestricted load of the
   same bytes only rebuilds tensors), graph nodes calling anything but ATen/prims operators
   and symbolic-shape arithmetic, and symbolic expressions that are not plain sympy
   constructor calls over literals.

The loader (``pt2_intake``) then calls the archive reader that was vetted, never
``torch.export.load`` with its legacy fallback.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import sympy
import torch
import torch.utils._sympy.functions as torch_sympy
from torch._export.serde import schema
from torch._export.serde.serialize import _SYM_OPS, _dict_to_dataclass
from torch._export.serde.union import _Union
from torch.export.pt2_archive import constants as layout

from compression.errors import InvalidModel, UnsafeArchive, UnsupportedFormat, is_out_of_memory
from compression.intake_limits import IntakeLimits, check, check_ratio

_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # all miniz reads
_OPERATOR_NAMESPACES = ("aten", "prims")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_SYM_OP_NAMES = frozenset(f"{op.__module__}.{op.__name__}" for op in _SYM_OPS)
_SYMPY_CALLS = frozenset(
    {
        "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Abs", "floor",
        "ceiling", "sqrt", "Equality", "Unequality", "StrictLessThan", "LessThan",
        "StrictGreaterThan", "GreaterThan", "And", "Or", "Not", "Piecewise", "ExprCondPair",
    }
    | {
        name
        for name, value in vars(torch_sympy).items()
        if isinstance(value, type) and issubclass(value, sympy.Basic)
    }
)  # fmt: skip
"""Constructors ``sympy.srepr`` writes for shape expressions: arithmetic, comparisons and
torch's integer functions. Nothing here reaches Python beyond building an expression."""
_SYMPY_NAMES = frozenset({"true", "false", "oo", "zoo", "nan"})


def vet_pt2(source: str | bytes, limits: IntakeLimits) -> None:
    """Refuse the archive (a path, or its bytes) unless torch.export's reader would only
    rebuild tensors from it."""
    members = _central_directory(_open(source))
    _check_names(members)
    _check_sizes(members, limits)
    reader = _torch_reader(_open(source))
    records = reader.get_all_records()
    _check_same_members(reader, records, members)
    _refuse_compiled_and_opaque(records)
    archive = _Archive(reader, frozenset(records), limits)
    format_, version = (
        archive.text(layout.ARCHIVE_FORMAT_PATH),
        archive.text(layout.ARCHIVE_VERSION_PATH),
    )
    if (format_, version) != (layout.ARCHIVE_FORMAT_VALUE, layout.ARCHIVE_VERSION_VALUE):
        raise InvalidModel(
            f"the archive says it is {format_!r} version {version!r}; this torch reads "
            f"{layout.ARCHIVE_FORMAT_VALUE!r} version {layout.ARCHIVE_VERSION_VALUE!r} "
            "(re-export with torch.export.save)"
        )
    programs = [record for record in records if record.startswith(layout.MODELS_DIR)]
    if not programs:
        raise InvalidModel("the archive holds no exported program (models/<name>.json)")
    for record in programs:
        _vet_program(archive, record)


def _open(source: str | bytes) -> str | io.BytesIO:
    """A fresh view for each reader: one must never see another's read position."""
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _central_directory(path: str | io.BytesIO) -> list[zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.infolist()
    except zipfile.BadZipFile as exc:
        raise UnsupportedFormat("the .pt2 file is not a valid zip archive") from exc


def _check_names(members: list[zipfile.ZipInfo]) -> None:
    if not members:
        raise InvalidModel("the .pt2 archive is empty")
    root = members[0].filename.split("/", 1)[0]
    seen: dict[str, str] = {}
    for info in members:
        name = info.filename
        parts = name.split("/")
        if (
            "\\" in name
            or "\x00" in name
            or len(parts) < 2
            or parts[0] != root
            or any(part in ("", ".", "..") for part in parts[:-1])
            or parts[-1] in (".", "..")
        ):
            raise UnsafeArchive(
                f".pt2 member {name!r} is not a plain path inside the archive's top folder "
                f"{root!r}; torch.export.save never writes such names"
            )
        folded = name.lower()
        if folded in seen:
            raise UnsafeArchive(
                f".pt2 member {name!r} appears twice (as {seen[folded]!r}); two readers of "
                "the archive could read different copies, so it is refused"
            )
        seen[folded] = name
        if info.flag_bits & 0x1 or info.compress_type not in _COMPRESSIONS:
            raise UnsafeArchive(
                f".pt2 member {name!r} is encrypted or compressed in a way torch cannot read"
            )


def _check_sizes(members: list[zipfile.ZipInfo], limits: IntakeLimits) -> None:
    check(limits, "max_archive_members", len(members), "the number of .pt2 members", UnsafeArchive)
    check(
        limits, "max_archive_expanded_bytes", sum(info.file_size for info in members),
        "the uncompressed size of the .pt2 archive", UnsafeArchive,
    )  # fmt: skip
    for info in members:
        check_ratio(
            limits.max_compression_ratio, info.file_size, info.compress_size,
            f".pt2 member {info.filename!r}",
        )  # fmt: skip
        if info.filename.endswith(".json"):
            check(
                limits, "max_metadata_bytes", info.file_size,
                f"the size of .pt2 member {info.filename!r}", UnsafeArchive,
            )  # fmt: skip


def _torch_reader(path: str | io.BytesIO) -> Any:
    try:
        return torch._C.PyTorchFileReader(path)
    except RuntimeError as exc:
        raise InvalidModel(
            f"torch cannot read the .pt2 archive: {str(exc).splitlines()[0]}"
        ) from exc


def _check_same_members(reader: Any, records: list[str], members: list[zipfile.ZipInfo]) -> None:
    """Both readers must see the same members with the same sizes, or one was fooled."""
    names = [info.filename.split("/", 1)[1] for info in members]
    if records != names:
        raise UnsafeArchive(
            "torch's zip reader and Python's disagree about the members of the .pt2 archive; "
            "it was crafted, not written by torch.export.save"
        )
    for record, info in zip(records, members, strict=True):
        if reader.get_record_size(record) != info.file_size:
            raise UnsafeArchive(
                f".pt2 member {info.filename!r} has different sizes for different zip readers"
            )


def _refuse_compiled_and_opaque(records: list[str]) -> None:
    for record in records:
        if record.startswith(layout.AOTINDUCTOR_DIR):
            raise InvalidModel(
                f".pt2 member {record!r} is compiled AOTInductor code, which is never loaded; "
                "upload a plain torch.export.save() archive"
            )
        base = record.rsplit("/", 1)[-1]
        if base.startswith((layout.CUSTOM_OBJ_FILENAME_PREFIX, layout.OPAQUE_OBJ_FILENAME_PREFIX)):
            raise InvalidModel(
                f".pt2 member {record!r} is an opaque Python object that would have to be "
                "unpickled; export a model whose constants are plain tensors"
            )


@dataclasses.dataclass(frozen=True)
class _Archive:
    """The archive as torch's reader sees it."""

    reader: Any
    records: frozenset[str]
    limits: IntakeLimits

    def read(self, record: str, purpose: str) -> bytes:
        if record not in self.records:
            raise InvalidModel(f"the .pt2 archive lacks {record!r} ({purpose})")
        return bytes(self.reader.get_record(record))

    def text(self, record: str) -> str:
        try:
            return self.read(record, "archive header").decode()
        except UnicodeDecodeError as exc:
            raise InvalidModel(f".pt2 member {record!r} is not text") from exc

    def json(self, record: str, purpose: str) -> Any:
        if record not in self.records:
            raise InvalidModel(f"the .pt2 archive lacks {record!r} ({purpose})")
        check(
            self.limits, "max_metadata_bytes", self.reader.get_record_size(record),
            f"the size of .pt2 member {record!r}", UnsafeArchive,
        )  # fmt: skip
        try:
            return json.loads(self.read(record, purpose), object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as exc:
            raise InvalidModel(f".pt2 member {record!r} is not valid JSON: {exc}") from exc


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects whose keys repeat mean different things to different parsers: refused."""
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f"repeated keys {repeated}")
    return dict(pairs)


def _vet_program(archive: _Archive, record: str) -> None:
    """One exported program, read the way ``_load_exported_programs`` reads it."""
    prefix, suffix = layout.MODELS_FILENAME_FORMAT.split("{}")
    name = record[len(prefix) : -len(suffix)]
    _vet_pickle(
        archive.read(layout.SAMPLE_INPUTS_FILENAME_FORMAT.format(name), "sample inputs"),
        layout.SAMPLE_INPUTS_FILENAME_FORMAT.format(name),
    )
    program = _dataclass(schema.ExportedProgram, archive.json(record, "the graph"), record)
    _vet_graph(program, record)
    _vet_payloads(archive, name, layout.WEIGHTS_DIR, layout.WEIGHTS_CONFIG_FILENAME_FORMAT)
    _vet_payloads(archive, name, layout.CONSTANTS_DIR, layout.CONSTANTS_CONFIG_FILENAME_FORMAT)


def _vet_payloads(archive: _Archive, model: str, folder: str, config_format: str) -> None:
    """Weights or constants, as ``_load_state_dict`` / ``_load_constants`` read them."""
    legacy = f"{folder}{model}.pt"
    if legacy in archive.records:  # torch hands these bytes to its unpickler
        _vet_pickle(archive.read(legacy, "legacy payload"), legacy)
        return
    config_record = config_format.format(model)
    config = _dataclass(
        schema.PayloadConfig, archive.json(config_record, "payload config"), config_record
    )
    _vet_graph(config, config_record)
    constants = folder == layout.CONSTANTS_DIR
    for fqn, meta in config.config.items():
        record = os.path.join(folder, meta.path_name)
        if constants and not meta.path_name.startswith(layout.TENSOR_CONSTANT_FILENAME_PREFIX):
            raise InvalidModel(
                f"constant {fqn!r} is stored as {meta.path_name!r}, not a plain tensor; "
                "export a model whose constants are tensors"
            )
        if meta.use_pickle:
            _vet_pickle(archive.read(record, f"pickled payload of {fqn!r}"), record)
        else:
            _vet_raw_tensor(archive, record, fqn, meta)


def _vet_raw_tensor(archive: _Archive, record: str, fqn: str, meta: Any) -> None:
    """Raw payloads are viewed in place; an empty record makes torch allocate the declared
    shape as zeros, so a declared shape must be backed by bytes."""
    if record not in archive.records:
        raise InvalidModel(f"{fqn!r} points at {record!r}, which the archive does not hold")
    tensor_meta = meta.tensor_meta
    if tensor_meta is None:
        raise InvalidModel(f"{fqn!r} is stored raw without a shape")
    sizes = [size.as_int if size.type == "as_int" else None for size in tensor_meta.sizes]
    if any(size is None or size < 0 for size in sizes):
        raise InvalidModel(f"{fqn!r} declares a symbolic or negative shape {tensor_meta.sizes}")
    if math.prod(sizes) > 0 and archive.reader.get_record_size(record) == 0:
        raise InvalidModel(f"{fqn!r} declares shape {sizes} but its payload {record!r} is empty")


def _vet_pickle(data: bytes, record: str) -> None:
    """Only a torch.save zip that the restricted unpickler accepts: its stream references
    nothing but tensor-rebuilding functions, so any unpickler of these bytes is harmless."""
    if not data.startswith(b"PK\x03\x04"):
        raise InvalidModel(
            f".pt2 member {record!r} is not a torch.save archive; it was not unpickled"
        )
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:
        if is_out_of_memory(exc):  # the task's memory limit, not a bad file
            raise
        raise InvalidModel(
            f".pt2 member {record!r} is a pickle that holds more than plain tensors; "
            "it was not loaded"
        ) from exc


def _dataclass(cls: type, data: Any, record: str) -> Any:
    """Parse with torch's own schema reader, so the vetted object is what torch will use."""
    try:
        return _dict_to_dataclass(cls, data)
    except Exception as exc:
        if is_out_of_memory(exc):  # the task's memory limit, not a bad file
            raise
        raise InvalidModel(f".pt2 member {record!r} does not follow torch's schema") from exc


def _vet_graph(root: Any, record: str) -> None:
    for value in _walk(root):
        if isinstance(value, schema.Node):
            _vet_target(value.target, record)
        elif isinstance(value, schema.SymExpr):
            _vet_expression(value.expr_str, record)


def _walk(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, _Union):  # only the field that is set may be read
            stack.append(item.value)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(getattr(item, field.name) for field in dataclasses.fields(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _vet_target(target: str, record: str) -> None:
    """ATen and prims operators, and the symbolic-shape arithmetic torch serializes by name;
    the deserializer would otherwise turn any callable reachable from ``torch`` into a node."""
    if target in _SYM_OP_NAMES:
        return
    parts = target.split(".")
    if (
        len(parts) == 5
        and parts[:2] == ["torch", "ops"]
        and parts[2] in _OPERATOR_NAMESPACES
        and all(_IDENTIFIER.match(part) and not part.startswith("__") for part in parts[3:])
    ):
        packet = getattr(getattr(torch.ops, parts[2]), parts[3], None)
        if isinstance(getattr(packet, parts[4], None), torch._ops.OpOverload):
            return
    raise InvalidModel(
        f"the graph in {record!r} calls {target!r}, which is not an ATen operator; only "
        "graphs of standard operators are accepted"
    )


def _vet_expression(text: str, record: str) -> None:
    """A symbolic shape as ``sympy.srepr`` writes it, and nothing else: torch evaluates it."""
    try:
        tree = ast.parse(text, mode="eval")
        _vet_sympy_node(tree.body)
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise InvalidModel(
            f"the graph in {record!r} holds a symbolic shape {text[:80]!r} that is not a plain "
            "expression; it was not evaluated"
        ) from exc


def _vet_sympy_node(node: ast.AST) -> None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | bool):
        return
    if isinstance(node, ast.Name) and node.id in _SYMPY_NAMES:
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _vet_sympy_node(node.operand)
        return
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        function = node.func.id
        if function not in _SYMPY_CALLS:
            raise ValueError(function)
        for position, argument in enumerate(node.args):
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                if not _string_argument_ok(function, position, argument.value):
                    raise ValueError(argument.value)
            else:
                _vet_sympy_node(argument)
        for keyword in node.keywords:
            if not (
                keyword.arg
                and _IDENTIFIER.match(keyword.arg)
                and not keyword.arg.startswith("_")
                and isinstance(keyword.value, ast.Constant)
                and isinstance(keyword.value.value, int | bool)
            ):
                raise ValueError(keyword.arg)
        return
    raise ValueError(type(node).__name__)


def _string_argument_ok(function: str, position: int, value: str) -> bool:
    """Strings appear only as a symbol's name and a float's digits."""
    if position != 0:
        return False
    if function == "Symbol":
        return bool(_IDENTIFIER.match(value)) and not value.startswith("_")
    return function == "Float" and bool(_NUMBER.match(value))
