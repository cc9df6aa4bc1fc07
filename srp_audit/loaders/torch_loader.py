"""PyTorch models into the IR, safely.

- `.pt2` (torch.export): the core-ATen graph after `run_decompositions()` is walked into the IR, one handler
  per ATen op in `ATEN`; constant sub-expressions (weight transposes, …) are evaluated with torch itself.
- `--model-factory pkg.mod:fn WEIGHTS`: the user's module, its state dict loaded with `weights_only=True` (or
  from .safetensors), then torch.export, then as above.
- TorchScript `.pt`: exported to ONNX by torch's TorchScript exporter and read by the ONNX loader.
- Pickled whole modules: only with `trust=True`; otherwise the error lists the classes the file would import.
Nothing here unpickles a file's objects without that flag; `.pt2` archives are scanned for pickled members first.
"""

from __future__ import annotations

import importlib
import io
import math
import operator
import os
import pickle
import sys
import tempfile
import warnings
import zipfile
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ModelLoadError, UnsupportedOpError
from ..ir import nodes as ir
from ..ir.graph import INPUT, Graph, GraphMeta
from ..ir.passes import prune_dead
from ..ir.registry import registrar
from .context import BATCH, LoaderContext, Tensor, Value, input_is_batched
from .safetensors_io import read_safetensors

# ============================================================================ safety


def unsafe_globals(data: str | bytes) -> list[str]:
    """Classes and functions a torch pickle would import beyond what `weights_only` loading allows."""
    f = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(f))
    except Exception:  # not a torch zip pickle: assume the worst
        return ["<unreadable pickle>"]


def _refuse(path: str, names: list[str], what: str) -> ModelLoadError:
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return ModelLoadError(
        f"'{path}' {what} would import and run Python objects ({shown}); unpickling can execute arbitrary code. "
        "Prefer an ONNX or .pt2 export or a state dict with --model-factory; if you trust the file, pass --trust-checkpoint"
    )


def archive_kind(path: str) -> str:
    """'pt2', 'torchscript', 'pickle' (torch.save zip or legacy pickle) or 'unknown'."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        return "pickle" if head[:1] == b"\x80" else "unknown"
    names = zipfile.ZipFile(path).namelist()
    if any(n.endswith("/archive_format") or n.endswith("models/model.json") for n in names):
        return "pt2"
    if any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "pickle"
    return "unknown"


def _pt2_unsafe(path: str) -> list[str]:
    bad: list[str] = []
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith((".pt", ".pkl", ".pickle")):
                bad += unsafe_globals(z.read(name))
    return bad


# ============================================================================ state dicts


def read_state_dict(path: str, trust: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file (weights_only unless trusted), unwrapped from the usual
    containers ({'state_dict': …}, {'model': …}, a one-element list, DataParallel's 'module.' prefix)."""
    if not os.path.exists(path):
        raise ModelLoadError(f"weights file '{path}' does not exist")
    if path.endswith(".safetensors"):
        obj: Any = read_safetensors(path)[0]
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError) as e:
            if not trust:
                names = unsafe_globals(path) if zipfile.is_zipfile(path) else ["<legacy pickle>"]
                raise _refuse(path, names, "holds more than tensors: loading it") from None
            obj = torch.load(path, map_location="cpu", weights_only=False)
            del e
        except Exception as e:
            raise ModelLoadError(f"'{path}' is not a readable PyTorch file ({type(e).__name__}: {str(e)[:120]})") from None
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    for _ in range(3):
        if isinstance(obj, (list, tuple)) and len(obj) == 1:
            obj = obj[0]
        if isinstance(obj, dict) and not _is_tensor_dict(obj):
            for key in ("state_dict", "model_state_dict", "model", "net", "network"):
                if key in obj:
                    obj = obj[key]
                    break
    if not isinstance(obj, dict) or not _is_tensor_dict(obj):
        raise ModelLoadError(f"'{path}' does not hold a state dict (name → tensor) where expected")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _is_tensor_dict(d: dict) -> bool:
    return bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


# ============================================================================ module → ExportedProgram


def _example(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.zeros((2,) + tuple(shape))  # batch 2: torch specialises a dynamic dimension that equals 1


def export_module(module: torch.nn.Module, input_shape: tuple[int, ...], source: str) -> torch.export.ExportedProgram:
    module = module.eval()
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(module, (_example(input_shape),), dynamic_shapes=({0: batch},))
    except Exception as e:
        raise ModelLoadError(f"torch.export could not trace {source} with input shape {tuple(input_shape)} "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None


def load_factory(factory: str, weights: str, input_shape: tuple[int, ...] | None, trust: bool = False) -> Graph:
    """Build the user's module with `pkg.mod:fn`, load WEIGHTS into it (names checked), export and read it."""
    mod_name, _, attr = factory.partition(":")
    if not mod_name or not attr:
        raise ModelLoadError(f"--model-factory {factory!r}: expected 'package.module:function'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:
        raise ModelLoadError(f"--model-factory: cannot import {mod_name!r} ({type(e).__name__}: {e})") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise ModelLoadError(f"--model-factory: {mod_name!r} has no callable {attr!r}")
    net = fn()
    if not isinstance(net, torch.nn.Module):
        raise ModelLoadError(f"--model-factory: {factory} returned {type(net).__name__}, not a torch.nn.Module")
    state = read_state_dict(weights, trust)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:6])}{' …' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:6])}{' …' if len(unexpected) > 6 else ''}")
        raise ModelLoadError(f"the weights in '{weights}' do not fit {factory}: {'; '.join(parts)}")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ModelLoadError(f"the weights in '{weights}' do not fit {factory}: shape mismatch {', '.join(wrong[:4])}")
    net.load_state_dict(state)
    shape = input_shape or getattr(net, "input_shape", None)
    if shape is None:
        raise ModelLoadError("--model-factory needs --input-shape C,H,W (or an `input_shape` attribute on the module)")
    return graph_from_exported(export_module(net, tuple(shape), factory), weights)


def load_pt2(path: str, trust: bool = False) -> Graph:
    bad = _pt2_unsafe(path)
    if bad and not trust:
        raise _refuse(path, bad, "(a torch.export archive) holds pickled objects; loading it")
    try:
        ep = torch.export.load(path)
    except Exception as e:
        raise ModelLoadError(f"'{path}' is not a readable torch.export archive ({type(e).__name__}: {str(e)[:160]})") from None
    return graph_from_exported(ep, path)


def load_torchscript(path: str, input_shape: tuple[int, ...] | None) -> Graph:
    """TorchScript is deprecated upstream; we convert it through torch's TorchScript ONNX exporter."""
    from .onnx_loader import load_onnx

    if input_shape is None:
        raise ModelLoadError(f"'{path}' is TorchScript, which does not record its input shape: pass --input-shape C,H,W")
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as e:
        raise ModelLoadError(f"'{path}' is not a readable TorchScript file ({type(e).__name__}: {str(e)[:160]})") from None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ts.onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (_example(input_shape),), out, dynamo=False, opset_version=17,
                                  input_names=["input"], dynamic_axes={"input": {0: "batch"}})
        except Exception as e:
            raise ModelLoadError(f"'{path}' (TorchScript) could not be converted ({type(e).__name__}: {str(e)[:160]})") from None
        g = load_onnx(out)
    g.meta = GraphMeta(source=path, input_name="input", output_name=g.meta.output_name, batched=True,
                       original_input_shape=g.meta.original_input_shape, origin=g.meta.origin)
    return g


def load_pickled_module(path: str, input_shape: tuple[int, ...] | None, trust: bool) -> Graph:
    if not trust:
        raise _refuse(path, unsafe_globals(path) if zipfile.is_zipfile(path) else ["<legacy pickle>"], "is a pickled module; loading it")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(obj, torch.nn.Module):
        raise ModelLoadError(f"'{path}' holds a {type(obj).__name__}, not a module; for a state dict pass --model-factory")
    shape = input_shape or getattr(obj, "input_shape", None)
    if shape is None:
        raise ModelLoadError(f"'{path}' does not record its input shape: pass --input-shape C,H,W")
    return graph_from_exported(export_module(obj, tuple(shape), path), path)


# ============================================================================ ATen → IR


class _AtenCtx(LoaderContext):
    def __init__(self, batched: bool) -> None:
        super().__init__(batched)
        self.node: Any = None

    @property
    def node_name(self) -> str:
        return self.node.name if self.node is not None else "?"

    @property
    def op_name(self) -> str:
        return str(self.node.target) if self.node is not None else "?"


AtenHandler = Callable[[_AtenCtx, list, dict], Any]
ATEN: dict[str, AtenHandler] = {}


aten = registrar(ATEN)  # @aten("aten.relu.default", ...)


def _const(v: Any) -> np.ndarray:
    return v if isinstance(v, np.ndarray) else np.asarray(v)


def _ints(v: Any) -> list[int]:
    return [int(x) for x in np.asarray(v).reshape(-1)] if not isinstance(v, (list, tuple)) else [int(np.asarray(x)) for x in v]


@aten("aten.convolution.default")
def _conv(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x, w, b, stride, padding, dilation, transposed, _, groups = a[:9]
    if transposed:
        raise ctx.unsupported("transposed convolutions are not supported")
    x = _tensor(ctx, x)
    wt = _weight(ctx, w)
    if wt.dim() != 4 or len(x.shape) != 3:
        raise ctx.unsupported("only 2-D convolutions are supported")
    bias = _weight(ctx, b) if b is not None else None
    return ctx.emit(ir.Conv2d(wt, bias, _ints(stride), _ints(padding), _ints(dilation), int(groups)), [x], "conv")


@aten("aten.addmm.default")
def _addmm(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    bias, x, w_t = a[:3]
    if kw.get("beta", 1) != 1 or kw.get("alpha", 1) != 1:
        raise ctx.unsupported("addmm with alpha/beta other than 1")
    wt = _weight(ctx, w_t)
    return ctx.emit(ir.Dense(wt.T.contiguous(), _weight(ctx, bias).reshape(-1).expand(wt.shape[1]).clone()), [_tensor(ctx, x)], "dense")


@aten("aten.mm.default")
def _mm(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x, w_t = a[:2]
    return ctx.emit(ir.Dense(_weight(ctx, w_t).T.contiguous()), [_tensor(ctx, x)], "dense")


@aten("aten.linear.default")
def _linear(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x, w = a[:2]
    b = a[2] if len(a) > 2 else None
    return ctx.emit(ir.Dense(_weight(ctx, w), _weight(ctx, b) if b is not None else None), [_tensor(ctx, x)], "dense")


@aten("aten._native_batch_norm_legit_no_training.default", "aten.native_batch_norm.default", "aten._native_batch_norm_legit.default")
def _batchnorm(ctx: _AtenCtx, a: list, kw: dict) -> tuple:
    if str(ctx.node.target) != "aten._native_batch_norm_legit_no_training.default" and len(a) > 5 and bool(a[5]):
        raise ctx.unsupported("batch-norm in training mode; call model.eval() before exporting")
    x, w, b, mean, var = a[:5]
    eps = float(a[-1])
    x = _tensor(ctx, x)
    m, v = _weight(ctx, mean), _weight(ctx, var)
    gamma = _weight(ctx, w) if w is not None else torch.ones_like(m)
    beta = _weight(ctx, b) if b is not None else torch.zeros_like(m)
    out = ctx.emit(ir.BatchNorm(m, v, gamma, beta, eps, len(x.shape)), [x], "batchnorm")
    return (out, None, None)


@aten("aten.relu.default", "aten.sigmoid.default", "aten.tanh.default")
def _act(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    cls = {"relu": ir.Relu, "sigmoid": ir.Sigmoid, "tanh": ir.Tanh}[str(ctx.node.target).split(".")[1]]
    return ctx.emit(cls(), [_tensor(ctx, a[0])])


@aten("aten.add.Tensor", "aten.sub.Tensor")
def _add(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x, y = a[:2]
    alpha = kw.get("alpha", 1)
    if alpha != 1:
        y = ctx.mul_or_div(y, np.asarray(alpha, dtype=np.float32), False) if isinstance(y, Tensor) else _const(y) * alpha
    return ctx.add_or_sub(_val(x), _val(y), str(ctx.node.target) == "aten.sub.Tensor")


@aten("aten.mul.Tensor", "aten.div.Tensor")
def _mul(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    if kw.get("rounding_mode"):
        raise ctx.unsupported("rounding division")
    return ctx.mul_or_div(_val(a[0]), _val(a[1]), str(ctx.node.target) == "aten.div.Tensor")


@aten("aten.neg.default")
def _neg(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    return ctx.emit(ir.ElementwiseAffine(-1.0, 0.0), [_tensor(ctx, a[0])], "neg")


@aten("aten.view.default", "aten.reshape.default", "aten._unsafe_view.default")
def _view(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = _tensor(ctx, a[0])
    shape = _ints(a[1])
    total = math.prod(ctx.full_shape(x))
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        shape[shape.index(-1)] = total // max(known, 1)
    return ctx.reshape_to(x, shape)


@aten("aten.flatten.using_ints")
def _flatten(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = _tensor(ctx, a[0])
    full = list(ctx.full_shape(x))
    start = int(a[1]) % len(full) if len(a) > 1 else 0
    end = int(a[2]) % len(full) if len(a) > 2 else len(full) - 1
    return ctx.reshape_to(x, full[:start] + [math.prod(full[start : end + 1])] + full[end + 1 :])


@aten("aten.unsqueeze.default", "aten.squeeze.dim", "aten.squeeze.dims")
def _squeeze(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = _tensor(ctx, a[0])
    out_shape = [BATCH if not isinstance(s, int) else int(s) for s in ctx.node.meta["val"].shape]
    return ctx.reshape_to(x, out_shape)


@aten("aten.permute.default")
def _permute(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = _tensor(ctx, a[0])
    perm = [p % len(ctx.full_shape(x)) for p in _ints(a[1])]
    if ctx.batched:
        if perm[0] != 0:
            raise ctx.unsupported(f"permutation {perm} moves the batch axis")
        perm = [p - 1 for p in perm[1:]]
    return x if perm == sorted(perm) else ctx.emit(ir.Transpose(perm), [x])


@aten("aten.avg_pool2d.default")
def _avgpool(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = _tensor(ctx, a[0])
    kernel = _ints(a[1])
    stride = _ints(a[2]) if len(a) > 2 and a[2] else kernel
    padding = _ints(a[3]) if len(a) > 3 else [0, 0]
    ceil = bool(a[4]) if len(a) > 4 else False
    include = bool(a[5]) if len(a) > 5 else True
    if len(a) > 6 and a[6] is not None:
        raise ctx.unsupported("divisor_override")
    return ctx.emit(ir.AvgPool2d(kernel, stride, padding, include, ceil), [x], "avgpool")


@aten("aten.max_pool2d_with_indices.default", "aten.max_pool2d.default")
def _maxpool(ctx: _AtenCtx, a: list, kw: dict):
    x = _tensor(ctx, a[0])
    kernel = _ints(a[1])
    stride = _ints(a[2]) if len(a) > 2 and a[2] else kernel
    padding = _ints(a[3]) if len(a) > 3 else [0, 0]
    dilation = _ints(a[4]) if len(a) > 4 else [1, 1]
    ceil = bool(a[5]) if len(a) > 5 else False
    out = ctx.emit(ir.MaxPool2d(kernel, stride, padding, dilation, ceil), [x], "maxpool")
    return (out, None) if "indices" in str(ctx.node.target) else out


@aten("aten.mean.dim")
def _mean(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = _tensor(ctx, a[0])
    rank = len(ctx.full_shape(x))
    dims = sorted(d % rank for d in _ints(a[1]))
    keep = bool(a[2]) if len(a) > 2 else bool(kw.get("keepdim", False))
    if not ctx.batched or rank != 4 or dims != [2, 3]:
        raise ctx.unsupported("only the mean over the two spatial axes of an (N, C, H, W) tensor is supported")
    pooled = ctx.emit(ir.AvgPool2d(x.shape[1:], 1), [x], "avgpool")
    return pooled if keep else ctx.emit(ir.Reshape((x.shape[0],)), [pooled])


@aten("aten.constant_pad_nd.default")
def _pad(ctx: _AtenCtx, a: list, kw: dict) -> Tensor:
    x = _tensor(ctx, a[0])
    flat = _ints(a[1])
    value = float(a[2]) if len(a) > 2 else 0.0
    pads = [(0, 0)] * len(x.shape)
    for i in range(len(flat) // 2):  # torch lists pads from the last axis backwards
        pads[len(x.shape) - 1 - i] = (flat[2 * i], flat[2 * i + 1])
    if any(p < 0 for pair in pads for p in pair):
        raise ctx.unsupported("negative padding (cropping)")
    return ctx.emit(ir.Pad(pads, value), [x])


@aten("aten.clone.default", "aten.alias.default", "aten.detach.default", "aten._to_copy.default", "aten.dropout.default",
      "aten.contiguous.default", "aten.lift_fresh_copy.default")
def _identity(ctx: _AtenCtx, a: list, kw: dict):
    v = _val(a[0])
    dtype = kw.get("dtype")
    if isinstance(v, Tensor) and dtype is not None and not dtype.is_floating_point:
        raise ctx.unsupported("casting the model's data to a non-float type")
    return v


@aten("aten.sym_size.int")
def _sym_size(ctx: _AtenCtx, a: list, kw: dict) -> np.ndarray:
    v = _val(a[0])
    shape = ctx.full_shape(v) if isinstance(v, Tensor) else np.asarray(v).shape
    return np.asarray(shape[int(a[1])])


def _val(v: Any) -> Value:
    return v if isinstance(v, Tensor) else _const(v)


def _tensor(ctx: _AtenCtx, v: Any) -> Tensor:
    if not isinstance(v, Tensor):
        raise ctx.unsupported("expected an input-dependent tensor here, got a constant")
    return v


def _weight(ctx: _AtenCtx, v: Any) -> torch.Tensor:
    if isinstance(v, Tensor):
        raise ctx.unsupported("a weight computed from the model's data is not supported")
    arr = np.asarray(v, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise ModelLoadError(f"a weight of node '{ctx.node_name}' ({ctx.op_name}) contains NaN or inf; the model's weights are corrupt")
    return torch.from_numpy(np.array(arr, copy=True))


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


def graph_from_exported(ep: torch.export.ExportedProgram, source: str) -> Graph:
    """Walk an ExportedProgram's core-ATen graph into the IR (unsimplified)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = ep.run_decompositions()
    except Exception as e:
        raise ModelLoadError(f"{source}: torch could not decompose the program ({type(e).__name__}: {str(e)[:120]})") from None
    from torch.export.graph_signature import InputKind

    consts: dict[str, np.ndarray] = {}
    user: list[str] = []
    for spec in ep.graph_signature.input_specs:
        name = spec.arg.name if hasattr(spec.arg, "name") else None
        if spec.kind == InputKind.USER_INPUT:
            user.append(name)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            t = ep.state_dict.get(spec.target) if spec.target in ep.state_dict else ep.constants.get(spec.target)
            if t is None:
                raise ModelLoadError(f"{source}: no value for {spec.target!r}")
            consts[name] = t.detach().cpu().float().numpy() if t.is_floating_point() else t.detach().cpu().numpy()
        else:
            raise ModelLoadError(f"{source}: unsupported program input kind {spec.kind.name}")
    if len(user) != 1:
        raise ModelLoadError(f"{source} takes {len(user)} data inputs; exactly one is supported")
    nodes = list(ep.graph.nodes)
    inp = next(n for n in nodes if n.op == "placeholder" and n.name == user[0])
    val = inp.meta.get("val")
    declared = [int(d) if isinstance(d, int) else str(d) for d in val.shape]
    batched = input_is_batched(declared)
    if batched and isinstance(declared[0], int) and declared[0] != 1:
        raise ModelLoadError(f"{source}: fixed batch size {declared[0]}; export with batch 1 or a dynamic batch axis")
    sample = declared[1:] if batched else declared
    if any(not isinstance(d, int) for d in sample):
        raise ModelLoadError(f"{source}: symbolic sample dimensions {declared}; a fixed sample shape is needed")
    ctx = _AtenCtx(batched)
    ctx.values[inp.name] = Tensor(INPUT, tuple(int(d) for d in sample))
    for name, arr in consts.items():
        ctx.values[name] = arr
    out_value = None
    for node in nodes:
        ctx.node = node
        if node.op == "placeholder":
            continue
        if node.op == "output":
            outs = node.args[0]
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            if len(outs) != 1:
                raise ModelLoadError(f"{source} returns {len(outs)} outputs; exactly one is supported")
            out_value = _resolve(ctx, outs[0])
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
        if target not in ATEN:
            raise UnsupportedOpError(node.name, target, None, "this ATen operator is not supported")
        ctx.values[node.name] = ATEN[target](ctx, args, kwargs)
    if not isinstance(out_value, Tensor):
        raise ModelLoadError(f"the output of {source} does not depend on its input")
    if out_value.ir == INPUT:
        out_value = ctx.emit(ir.Identity(), [out_value])
    meta = GraphMeta(source=source, input_name="input", output_name="output", batched=batched,
                     original_input_shape=tuple(declared), origin=ctx.origin)
    return prune_dead(Graph(tuple(int(d) for d in sample), ctx.nodes, out_value.ir, meta))
