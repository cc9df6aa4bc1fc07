"""`srp-audit inspect`: the IR of a model as a table, and which bound methods support each op."""

from __future__ import annotations

import click
from tabulate import tabulate

from .errors import debug_option
from .model_options import load, model_options


def _mark(method: str, node) -> str:
    return "yes" if node.supports(method) else "NO"


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--raw", is_flag=True, help="Show the graph as loaded, before batch-norm/normalisation folding.")
@model_options
@debug_option
def inspect_cmd(model, raw, model_opts) -> None:
    """Print MODEL's graph IR: layers, ops, output shapes, parameters, and bound-method support.

    \b
    Example:
      srp-audit inspect fixtures/mnist_resnet.onnx
    """
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
