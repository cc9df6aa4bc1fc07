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
import json
import os
import pickle
import re
import sys
import tempfile
import warnings
import zipfile
from typing import Any

import torch

from ..errors import ModelLoadError
from ..ir.graph import Graph, GraphMeta
from .aten_read import graph_from_exported
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


# What a plain torch.export archive holds (relative to its top folder); anything else — AOTInductor or
# ExecuTorch payloads, pickled custom objects, extra files — is refused before torch reads the archive.
_PT2_MEMBERS = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/[\w.-]+\.json"
    r"|data/weights/[\w.-]*weights_config\.json|data/weights/weight_\d+|data/constants/[\w.-]*constants_config\.json"
    r"|data/constants/tensor_\w+|data/sample_inputs/[\w.-]+\.pt)"
)
_MAX_PT2_CONFIG = 64 << 20  # bytes: a weights/constants config larger than this is not a model's


def pt2_refusals(path: str) -> list[str]:
    """Why loading this torch.export archive could run code, decided from the archive's own metadata before torch
    reads it (empty: safe). torch unpickles weights and constants whose config entry says `use_pickle`, custom
    and opaque objects, and falls back to a full unpickle of sample inputs that fail the weights-only loader."""
    bad: list[str] = []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            rel = info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
            if info.is_dir():
                continue
            if not _PT2_MEMBERS.fullmatch(rel):
                bad.append(f"member {info.filename!r} (not part of a plain torch.export program)")
            elif rel.endswith("_config.json"):
                bad += _pickled_payloads(z, info)
            elif rel.endswith(".pt"):
                bad += [f"{info.filename}: {g}" for g in unsafe_globals(z.read(info.filename))]
    return bad


def _pickled_payloads(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> list[str]:
    """Entries of a weights/constants config that torch would unpickle."""
    if info.file_size > _MAX_PT2_CONFIG:
        return [f"{info.filename} is {info.file_size} bytes"]
    try:
        config = json.loads(z.read(info.filename)).get("config", {})
        entries = list(config.items())
    except (ValueError, AttributeError):
        return [f"{info.filename} is not a readable payload config"]
    bad = []
    for name, meta in entries:
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False or not str(meta.get("path_name", "")).startswith(
                ("weight_", "tensor_")):
            bad.append(f"{info.filename}: {name!r} is stored pickled")
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
            obj = _torch_load(path, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError):
            if not trust:
                names = unsafe_globals(path) if zipfile.is_zipfile(path) else ["<legacy pickle>"]
                raise _refuse(path, names, "holds more than tensors: loading it") from None
            _importable_from_cwd()
            try:
                obj = _torch_load(path, weights_only=False)
            except Exception as e:
                raise ModelLoadError(f"'{path}' is not a readable PyTorch file ({type(e).__name__}: {str(e)[:120]})") from None
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


def _torch_load(path: str, weights_only: bool) -> Any:
    """torch.load on the CPU without torch's multi-line warnings (legacy formats, weights_only hints): every
    problem reaches the user as one line from our own error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=weights_only)


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
        raise ModelLoadError(f"torch.export could not trace {source} with input shape {tuple(input_shape)}: check "
                             f"--input-shape ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None


def _importable_from_cwd() -> None:
    """User code (a factory's module, a trusted pickle's classes) is looked up from the current folder too."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def load_factory(factory: str, weights: str, input_shape: tuple[int, ...] | None, trust: bool = False) -> Graph:
    """Build the user's module with `pkg.mod:fn`, load WEIGHTS into it (names checked), export and read it."""
    mod_name, _, attr = factory.partition(":")
    if not mod_name or not attr:
        raise ModelLoadError(f"--model-factory {factory!r}: expected 'package.module:function'")
    _importable_from_cwd()
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:
        raise ModelLoadError(f"--model-factory: cannot import {mod_name!r} ({type(e).__name__}: {e})") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise ModelLoadError(f"--model-factory: {mod_name!r} has no callable {attr!r}")
    try:
        net = fn()
    except Exception as e:
        raise ModelLoadError(f"--model-factory {factory} raised {type(e).__name__}: {str(e)[:160]}") from None
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
    """A torch.export archive, refused unless every member is plain data (see `pt2_refusals`) or `trust`."""
    bad = pt2_refusals(path)
    if bad and not trust:
        raise _refuse(path, bad, "(a torch.export archive) holds pickled objects or code; loading it")
    try:
        ep = torch.export.load(path)
    except Exception as e:
        raise ModelLoadError(f"'{path}' is not a readable torch.export archive ({type(e).__name__}: {str(e)[:160]})") from None
    return graph_from_exported(ep, path)


def load_torchscript(path: str, input_shape: tuple[int, ...] | None) -> Graph:
    """TorchScript is deprecated upstream; we convert it through torch's TorchScript ONNX exporter."""
    from .onnx_read import load_onnx

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
            raise ModelLoadError(f"'{path}' (TorchScript) could not be run on an input of shape {tuple(input_shape)}: check "
                                 f"--input-shape ({type(e).__name__}: {str(e).splitlines()[0][:140]})") from None
        g = load_onnx(out)
    g.meta = GraphMeta(source=path, input_name="input", output_name=g.meta.output_name, batched=True,
                       original_input_shape=g.meta.original_input_shape, origin=g.meta.origin)
    return g


def load_pickled_module(path: str, input_shape: tuple[int, ...] | None, trust: bool) -> Graph:
    if not trust:
        raise _refuse(path, unsafe_globals(path) if zipfile.is_zipfile(path) else ["<legacy pickle>"], "is a pickled module; loading it")
    _importable_from_cwd()
    try:
        obj = _torch_load(path, weights_only=False)
    except (AttributeError, ImportError) as e:  # the module's class is not importable here
        raise ModelLoadError(f"'{path}' needs a class it cannot import ({e}); run srp-audit where the class's module can be "
                             "imported (its folder, or on PYTHONPATH)") from None
    except Exception as e:
        raise ModelLoadError(f"'{path}' is not a readable pickled module ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(obj, torch.nn.Module):
        raise ModelLoadError(f"'{path}' holds a {type(obj).__name__}, not a module; for a state dict pass --model-factory")
    shape = input_shape or getattr(obj, "input_shape", None)
    if shape is None:
        raise ModelLoadError(f"'{path}' does not record its input shape: pass --input-shape C,H,W")
    return graph_from_exported(export_module(obj, tuple(shape), path), path)
