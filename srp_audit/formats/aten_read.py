"""torch.export programs → IR: the core-ATen graph after `run_decompositions()`, walked node by node.

Each ATen op has a handler in `ATEN`, or is declared by an op (`Node.aten_ops`, `from_aten`); constant
sub-expressions (weight transposes, casts, …) are evaluated with torch itself.
"""

from __future__ import annotations

import math
import operator
import warnings
from typing import Any

import numpy as np
import torch

from .. import ops
from ..errors import ModelLoadError, UnsupportedOpError
from ..ir.graph import Graph, GraphMeta
from ..ir.reading import aten_const, aten_ints, aten_tensor, aten_value, check_declarations
from ..ops.float_round import RoundToFloat
from . import activation_forms, aten_data_ops, discrete_handlers, normalisation_form, resize_form  # noqa: F401  (their handlers register into ATEN)
from .aten_context import ATEN, _AtenCtx, aten
from .aten_types import INTEGER_SAFE, integer_typed, reads_integer_data
from .batch_axis import batch_modes, read_in_modes, sample_shapes
from .context import BATCH, Tensor, bind_inputs, join_outputs


@aten("aten.add.Tensor", "aten.sub.Tensor")
def _add(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x, y = a[:2]
    alpha = kw.get("alpha", 1)
    if alpha != 1:
        y = ctx.mul_or_div(y, np.asarray(alpha, dtype=np.float32), False) if isinstance(y, Tensor) else aten_const(y) * alpha
    return ctx.add_or_sub(aten_value(x), aten_value(y), str(ctx.node.target) == "aten.sub.Tensor")


@aten("aten.mul.Tensor", "aten.div.Tensor")
def _mul(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    if kw.get("rounding_mode"):
        raise ctx.unsupported("rounding division")
    return ctx.mul_or_div(aten_value(a[0]), aten_value(a[1]), str(ctx.node.target) == "aten.div.Tensor")


@aten("aten.view.default", "aten.reshape.default", "aten._unsafe_view.default")
def _view(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    shape = aten_ints(a[1])
    total = math.prod(ctx.full_shape(x))
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        shape[shape.index(-1)] = total // max(known, 1)
    return ctx.reshape_to(x, shape)


@aten("aten.flatten.using_ints")
def _flatten(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = aten_tensor(ctx, a[0])
    full = list(ctx.full_shape(x))
    start = int(a[1]) % len(full) if len(a) > 1 else 0
    end = int(a[2]) % len(full) if len(a) > 2 else len(full) - 1
    return ctx.reshape_to(x, full[:start] + [math.prod(full[start : end + 1])] + full[end + 1 :])


@aten("aten.unsqueeze.default", "aten.squeeze.dim", "aten.squeeze.dims")
def _squeeze(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    if ctx.batched and isinstance(a[0], Tensor) and a[0].batch_at != 0:  # after a permute moved the batch axis
        target, rest = ctx.node.target, a[1:]
        return ctx.pick(a[0], lambda ids: [target(torch.from_numpy(ids), *rest).numpy()])[0]
    x = aten_tensor(ctx, a[0])
    out_shape = [BATCH if not isinstance(s, int) else int(s) for s in ctx.node.meta["val"].shape]
    return ctx.reshape_to(x, out_shape)


@aten("aten.permute.default")
def _permute(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = a[0] if isinstance(a[0], Tensor) else aten_tensor(ctx, a[0])  # (a moved batch axis may move on)
    return ctx.permute(x, [p % len(ctx.full_shape(x)) for p in aten_ints(a[1])])


@aten("aten.clone.default", "aten.alias.default", "aten.detach.default", "aten._to_copy.default", "aten.dropout.default",
      "aten.contiguous.default", "aten.lift_fresh_copy.default")
def _identity(ctx: _AtenCtx, a: list, kw: dict):
    v = aten_value(a[0])
    dtype = kw.get("dtype")
    if isinstance(v, Tensor) and dtype is not None and not dtype.is_floating_point:
        from ..ops.steps import INT_RANGES
        from .discrete_build import cast  # below: the builders import this module's context

        target = "bool" if dtype == torch.bool else str(dtype).removeprefix("torch.")
        if target != "bool" and target not in INT_RANGES:
            raise ctx.unsupported(f"casting the model's data to {dtype}")
        return cast(ctx, v, target, from_integer=bool(ctx.node.all_input_nodes) and integer_typed(ctx.node.all_input_nodes[0]))
    if isinstance(v, Tensor) and dtype is not None and dtype != torch.float64:
        source = ctx.node.all_input_nodes[0].meta.get("val") if ctx.node.all_input_nodes else None
        narrows = dtype != torch.float32 or (isinstance(source, torch.Tensor) and source.dtype == torch.float64)
        fmt = str(dtype).removeprefix("torch.")
        if fmt not in ("float16", "bfloat16", "float32"):
            raise ctx.unsupported(f"casting the model's data to {dtype}")
        return ctx.emit(RoundToFloat(fmt), [v], "round") if narrows else v
    return v


@aten("aten.sym_size.int")
def _sym_size(ctx: _AtenCtx, a: list, kw: dict) -> np.ndarray:
    v = aten_value(a[0])
    shape = ctx.full_shape(v) if isinstance(v, Tensor) else np.asarray(v).shape
    return np.asarray(shape[int(a[1])])


def _resolve(ctx: _AtenCtx, a: Any) -> Any:
    import torch.fx

    if isinstance(a, torch.fx.Node):
        if a.name not in ctx.values:
            raise ModelLoadError(f"node '{ctx.node_name}' reads '{a.name}', which nothing defines")
        return ctx.values[a.name]
    if isinstance(a, (list, tuple)):
        return type(a)(_resolve(ctx, x) for x in a)
    return a


def _fold(ctx: _AtenCtx, args: list, kwargs: dict) -> Any:
    """Evaluate an op whose inputs are all constants with torch itself (weight transposes, casts, …)."""
    def to_t(x):
        if isinstance(x, np.ndarray):
            return torch.from_numpy(np.array(x))
        if isinstance(x, (list, tuple)):
            return type(x)(to_t(y) for y in x)
        return x

    try:
        out = ctx.node.target(*to_t(args), **{k: to_t(v) for k, v in kwargs.items()})
    except Exception as e:
        raise ctx.unsupported(f"cannot evaluate on constants ({type(e).__name__}: {str(e)[:80]})") from None
    if isinstance(out, torch.Tensor):
        return out.detach().numpy()
    if isinstance(out, (tuple, list)):
        return type(out)(o.detach().numpy() if isinstance(o, torch.Tensor) else o for o in out)
    return np.asarray(out)


def _has_tensor(x: Any) -> bool:
    if isinstance(x, Tensor):
        return True
    if isinstance(x, (list, tuple)):
        return any(_has_tensor(y) for y in x)
    return False


KEPT_WHOLE = ("silu", "hardswish", "hardsigmoid", "softplus", "prelu", "mish", "layer_norm", "native_layer_norm",
              "log_softmax", "_log_softmax", "rsqrt", "upsample_nearest2d", "upsample_bilinear2d", "linear",
              "matmul", "one_hot", "embedding")
"""ATen ops read as themselves rather than decomposed: their own rules are tighter than their decompositions'
(a product of x with a function of x, or a `where` on the data), `linear`/`matmul` on (N, T, D) data would
otherwise become views that merge the batch axis into the tokens, and `one_hot`/`embedding` decompose into
data-dependent checks of the indices' range."""


def _decompositions() -> dict:
    table = torch.export.default_decompositions()
    for name in KEPT_WHOLE:
        packet = getattr(torch.ops.aten, name)
        for overload in packet.overloads():
            table.pop(getattr(packet, overload), None)
    return table


def graph_from_exported(ep: torch.export.ExportedProgram, source: str) -> Graph:
    """Walk an ExportedProgram's core-ATen graph into the IR (unsimplified)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = ep.run_decompositions(_decompositions())
    except Exception as e:
        raise ModelLoadError(f"{source}: torch could not decompose the program ({type(e).__name__}: {str(e)[:120]})") from None
    from torch.export.graph_signature import InputKind

    consts: dict[str, np.ndarray] = {}
    user: list[str] = []
    for spec in ep.graph_signature.input_specs:
        name = spec.arg.name if hasattr(spec.arg, "name") else None
        if spec.kind == InputKind.USER_INPUT:
            user.append(name)  # type: ignore[arg-type]  # a tensor input's argument is named: not None
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            t = ep.state_dict.get(spec.target) if spec.target in ep.state_dict else ep.constants.get(spec.target)
            if t is None:
                raise ModelLoadError(f"{source}: no value for {spec.target!r}")
            # float64 buffers stay float64 (a float32 copy would round them); half precision widens exactly
            keep = t.dtype == torch.float64 or not t.is_floating_point()
            consts[name] = t.detach().cpu().numpy() if keep else t.detach().cpu().float().numpy()  # type: ignore[index]  # named, as above
        else:
            raise ModelLoadError(f"{source}: unsupported program input kind {spec.kind.name}")
    if not user:
        raise ModelLoadError(f"{source} takes no data input")
    nodes = list(ep.graph.nodes)
    places = [next(n for n in nodes if n.op == "placeholder" and n.name == u) for u in user]
    declared = [[int(d) if isinstance(d, int) else str(d) for d in p.meta.get("val").shape] for p in places]
    return read_in_modes(batch_modes(declared, source), lambda batched: _read_program(ep, source, nodes, places, consts, declared, batched))


def _read_program(ep: Any, source: str, nodes: list, places: list, consts: dict, declared: list, batched: bool) -> Graph:
    ctx = _AtenCtx(batched)
    sample, tensors = bind_inputs(ctx, sample_shapes(declared, batched, source))
    for p, t in zip(places, tensors):
        ctx.values[p.name] = t
    for name, arr in consts.items():
        ctx.values[name] = arr
    declared_ops = ops.by_aten_op()
    out_value = None
    for node in nodes:
        ctx.node = node
        if node.op == "placeholder":
            continue
        if node.op == "output":
            outs = node.args[0]
            out_value = [_resolve(ctx, o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
            continue
        if node.op != "call_function":
            raise UnsupportedOpError(node.name, f"{node.op} {node.target}", None, "only call_function nodes are supported")
        args, kwargs = list(_resolve(ctx, list(node.args))), {k: _resolve(ctx, v) for k, v in node.kwargs.items()}
        if node.target is operator.getitem:
            ctx.values[node.name] = args[0][int(args[1])]
            if ctx.values[node.name] is None:
                raise ctx.unsupported("this output (e.g. max-pool indices) is not supported")
            continue
        target = str(node.target)
        if not _has_tensor(args) and not _has_tensor(list(kwargs.values())):
            ctx.values[node.name] = _fold(ctx, args, kwargs)
            continue
        if target not in ATEN and target not in declared_ops:
            raise UnsupportedOpError(node.name, target, None, "this ATen operator is not supported")
        if target.split(".")[1] not in INTEGER_SAFE and reads_integer_data(ctx.values, node):
            raise ctx.unsupported("arithmetic on integer-typed data (its wrap-around and truncating division are not "
                                  "modelled); cast the data to float before it")
        try:
            if target in ATEN:
                ctx.values[node.name] = ATEN[target](ctx, args, kwargs)
            else:
                ctx.values[node.name] = ctx.emit_declared([aten_tensor(ctx, args[0])], declared_ops[target].from_aten, args, kwargs)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError, RuntimeError, AssertionError, NotImplementedError) as e:
            raise ctx.unsupported(f"this form of it cannot be read ({type(e).__name__}: {str(e)[:160]}); please report the "
                                  "model to the srp-audit developers") from None
    if not out_value or not all(isinstance(o, Tensor) for o in out_value):
        raise ModelLoadError(f"an output of {source} does not depend on its input")
    several_in = len(places) > 1
    meta = GraphMeta(source=source, input_name="input", output_name="output", batched=batched,
                     original_input_shape=sample if several_in else tuple(declared[0]),
                     inputs=tuple((p.name, tuple(d)) for p, d in zip(places, declared)) if several_in else (),
                     outputs=tuple((f"output{i}", math.prod(o.shape)) for i, o in enumerate(out_value)) if len(out_value) > 1 else ())
    return ctx.graph(sample, join_outputs(ctx, out_value), meta)


check_declarations(ops.ALL_OPS)  # a form read twice is an error here, at import
