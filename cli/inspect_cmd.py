"""`srp-audit inspect`: the IR of a model as a table, and which bound methods support each op."""

from __future__ import annotations

import click
from tabulate import tabulate

from srp_audit.errors import UsageError

from .errors import debug_option
from .model_options import load, model_options


def _mark(method: str, node) -> str:
    return "yes" if node.supports(method) else "NO"


@click.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--raw", is_flag=True, help="Show the graph as loaded, before batch-norm/normalisation folding.")
@click.option("--ops", "list_ops", is_flag=True, help="List every IR op with its bound-method support, and the ONNX operators read.")
@model_options
@debug_option
def inspect_cmd(model, raw, list_ops, model_opts) -> None:
    """Print MODEL's graph IR: layers, ops, output shapes, parameters, and bound-method support (or, with --ops,
    what srp-audit supports at all).

    \b
    Examples:
      srp-audit inspect fixtures/mnist_resnet.onnx
      srp-audit inspect --ops
    """
    if list_ops:
        _print_ops()
        return
    if model is None:
        raise UsageError("inspect needs MODEL (or --ops for the supported operators)")
    g = load(model, model_opts, simplified=not raw)
    rows = []
    total = 0
    for i, (name, node, inputs) in enumerate(g.items()):
        params = sum(p.numel() for p in node.parameters())
        total += params
        origin = g.meta.origin.get(name, "")
        rows.append([i, name, node.op, node.describe(), ", ".join(inputs), "×".join(map(str, g.shapes[name])) or "()", params,
                     _mark("ibp", node), _mark("crown", node), _mark("singleprop", node), origin])
    click.echo(f"{model}: input {tuple(g.input_shape)} ({'batched' if g.meta.batched else 'unbatched'}), "
               f"{g.num_classes} outputs, {len(g.order)} nodes, {total:,} parameters{' (raw)' if raw else ''}")
    click.echo(tabulate(rows, headers=["#", "node", "op", "config", "inputs", "shape", "params", "ibp", "crown", "singleprop", "from"],
                        tablefmt="simple"))
    if g.meta.note:
        click.echo(f"note: {g.meta.note}")


def _print_ops() -> None:
    from srp_audit import ops
    from srp_audit.formats.onnx_read import supported_onnx_ops

    rows = [[cls.__name__, cls.kind, _mark("ibp", cls), _mark("crown", cls), _mark("singleprop", cls),
             ", ".join(t for t, on in (("nonlinear", cls.nonlinear), ("kinked at 0", cls.kinked_at_zero),
                                       ("patches", cls.crown_patches), ("keeps argmax", cls.keeps_argmax)) if on),
             " ".join((cls.__doc__ or "").strip().splitlines()[:1])[:70]] for cls in sorted(ops.ALL_OPS, key=lambda c: c.__name__)]
    click.echo(tabulate(rows, headers=["op", "kind", "ibp", "crown", "singleprop", "traits", "what"], tablefmt="simple"))
    click.echo(f"\nONNX operators read (on data): {', '.join(supported_onnx_ops())}")
