"""Models read with a fixed batch of B slots (an input declared (B, …), B > 1, whose output keeps that axis):
certified as the classifier of one sample copied into every slot and scored by the first slot."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .errors import UsageError
from .ir.graph import Graph
from .ir.relevance import relevant_entries
from .ir.walk import INPUT
from .ops.select import Select


def refuse_fixed_batch(graph: Graph) -> None:
    """A model read with a fixed batch of B > 1 slots (`slots.batch_slots`) cannot be trained one sample at a time
    (certify scores one sample per slot; training would mix B·K scores): a `UsageError` saying how to export it."""
    b = batch_slots(graph)
    if b is not None:
        raise UsageError(f"the model has a fixed batch of {b} (input {graph.input_shape}): robustify trains a model with a "
                         "batch axis; export it with a dynamic batch (torch.onnx.export(..., dynamic_axes={'input': {0: "
                         "'batch'}}), or dynamic_shapes with dynamo=True) or with a batch of 1")


def batch_slots(graph: Graph) -> int | None:
    """B when the model was read with a fixed batch of B > 1 as one sample (`formats.batch_axis.batch_modes`: an input
    declared as (B, …), e.g. exported by torch with a dummy batch of B and no dynamic axis) and its output keeps
    that batch axis, (B, …): B copies of the class scores, one per slot. None otherwise."""
    lead = tuple(graph.meta.original_input_shape)[:1]
    if graph.meta.batched or graph.meta.inputs or not lead or not isinstance(lead[0], int) or lead[0] <= 1:
        return None
    b = lead[0]
    if graph.input_shape[:1] != (b,) or len(graph.output_shape) < 2 or graph.output_shape[0] != b:
        return None
    return b


def one_sample_per_slot(graph: Graph, sample_shape: tuple[int, ...]) -> tuple[Graph, str | None]:
    """A model with a fixed batch of B slots (`batch_slots`) as the classifier of one sample: the sample copied into
    every slot, scored by the first slot's classes — so a label is never compared with a copy of its own score
    (read as one sample of B·K classes, every prediction tied with its copies). Samples of the model's whole
    input shape are refused (their label would name one of B·K scores). Other models are returned as they are."""
    b = batch_slots(graph)
    if b is None:
        return graph, None
    slot_in, slot_out = graph.input_shape[1:], graph.output_shape[1:]
    if tuple(sample_shape) != slot_in and math.prod(sample_shape) == math.prod(graph.input_shape):
        raise UsageError(f"the model has a fixed batch of {b} (input {graph.input_shape}, output {graph.output_shape}): "
                         f"certify scores one sample per slot, so give samples of one slot's shape {slot_in} (it copies "
                         f"each into all {b} slots and reads the first slot's {math.prod(slot_out)} scores), or export "
                         "the model with a batch axis of 1 or a dynamic one")
    n_in, n_out = math.prod(slot_in), math.prod(slot_out)
    names = set(graph.order)
    copies, first = _fresh("slot_copies", names), _fresh("first_slot", names)
    nodes: list = [(copies, Select(np.tile(np.arange(n_in), b), graph.input_shape, n_in), (INPUT,))]
    for name, node, ins in graph.items():
        nodes.append((name, node, tuple(copies if i == INPUT else i for i in ins)))
    nodes.append((first, Select(np.arange(n_out), slot_out, n_out * b), (graph.output,)))
    meta = replace(graph.meta, batched=True, original_input_shape=("batch",) + tuple(slot_in))
    wrapped = Graph(slot_in, nodes, first, meta)
    mixes = bool(relevant_entries(wrapped)[copies][:, 1:].any())
    how = ("its slots depend on each other, so the verdicts are about the sample in every slot"
           if mixes else "each slot is scored from its own input alone, so the other slots do not matter")
    note = (f"the model has a fixed batch of {b}: each sample was certified copied into all {b} slots, on the first "
            f"slot's {n_out} scores ({how})")
    return wrapped, note


def _fresh(stem: str, taken: set[str]) -> str:
    name, k = stem, 1
    while name in taken:
        name, k = f"{stem}_{k}", k + 1
    return name
