"""Short value names for the deployable ONNX file.

Every tensor name is stored in the file once per use: where a node writes it, where each
node reads it, and on its initializer. The exporter's names (``conv2d_1``, ``max_pool2d``,
``fc1.weight``) and the decoders' (``fc1.c3``) cost about 300 bytes on a small network whose
codes take 3 KB, so the delivered file renames every value to one or two characters, the
most used first. The graph's inputs and outputs keep their names (they are the model's
interface), and ``model.fp32.onnx`` keeps every name for tools that read parameters by name.
"""

from __future__ import annotations

import itertools
import string
from collections import Counter
from collections.abc import Iterator

from onnx import ModelProto

ALPHABET = string.ascii_letters + string.digits


def _short_names(reserved: set[str]) -> Iterator[str]:
    for length in itertools.count(1):
        for letters in itertools.product(ALPHABET, repeat=length):
            name = "".join(letters)
            if name not in reserved and not name[0].isdigit():
                yield name


def compact_names(model: ModelProto) -> None:
    """Rename, in place, every value of the main graph except its inputs and outputs.

    Graphs with subgraphs (``If``, ``Loop``, ``Scan``) are left as they are: a subgraph may
    read outer values by name. Model-local function bodies have their own scope and are not
    touched."""
    graph = model.graph
    if any(attribute.g.node or attribute.graphs for n in graph.node for attribute in n.attribute):
        return
    interface = {value.name for value in [*graph.input, *graph.output]}
    uses = Counter(
        name
        for name in itertools.chain(
            (initializer.name for initializer in graph.initializer),
            *([*node.input, *node.output] for node in graph.node),
        )
        if name and name not in interface
    )
    renamed = dict(
        zip((name for name, _ in uses.most_common()), _short_names(interface), strict=False)
    )

    def short(name: str) -> str:
        return renamed.get(name, name)

    for initializer in graph.initializer:
        initializer.name = short(initializer.name)
    for node in graph.node:
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]
    for value in graph.value_info:
        value.name = short(value.name)
