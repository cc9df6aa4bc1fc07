"""Options every command that reads a model shares: how to read PyTorch checkpoints, and whether to trust pickles."""

from __future__ import annotations

import functools

import click

from srp_audit.data import peek_sample_shape
from srp_audit.errors import UsageError
from srp_audit.formats import load_model


def _shape(ctx, param, value):
    if value is None:
        return None
    try:
        dims = tuple(int(v) for v in str(value).replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected sizes like 1,28,28, got {value!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise click.BadParameter(f"expected positive sizes like 1,28,28, got {value!r}")
    return dims


def model_options(fn):
    """Adds --model-factory, --input-shape and --trust-checkpoint, passed on as `model_opts`."""

    @click.option("--model-factory", default=None, metavar="PKG.MODULE:FN",
                  help="Build the network with this function and load MODEL as its state dict (.pt/.pth/.safetensors).")
    @click.option("--input-shape", callback=_shape, default=None, metavar="C,H,W",
                  help="One sample's shape, for PyTorch models that do not record it (factory, TorchScript, pickles).")
    @click.option("--trust-checkpoint", is_flag=True,
                  help="Allow unpickling Python objects (whole pickled modules). Only for files you trust.")
    @functools.wraps(fn)
    def wrapper(*args, model_factory=None, input_shape=None, trust_checkpoint=False, **kwargs):
        kwargs["model_opts"] = {"factory": model_factory, "input_shape": input_shape, "trust": trust_checkpoint}
        return fn(*args, **kwargs)

    return wrapper


def load(path: str, model_opts: dict, data: str | None = None, **kw):
    """Load MODEL with the shared options; a PyTorch model that does not record its input shape takes it from
    the samples' `x` when --input-shape is not given."""
    if model_opts.get("factory") and path.lower().endswith(".onnx"):
        raise UsageError("--model-factory reads a state dict, but MODEL is an ONNX file; drop --model-factory")
    opts = dict(model_opts)
    if opts.get("input_shape") is None and data and not path.lower().endswith(".onnx"):
        opts["input_shape"] = peek_sample_shape(data)
    return load_model(path, **opts, **kw)
