"""`srp-audit certify`: verdicts and certified radii for a model's samples."""

from __future__ import annotations

import os

import click

from srp_audit.bounds import CASCADE
from srp_audit.certify import CertifyOptions, certify as run_certify
from srp_audit.data import load_samples, samples_path_for
from srp_audit.errors import DataError
from srp_audit.loaders import load_model
from srp_audit.report import render

from .errors import EXIT_GATE, debug_option
from .params import DOMAIN, EPS, FRACTION, POSITIVE
from .progress import Progress


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--eps", type=EPS, required=True, help="L∞ radius to certify, in the model's input units (e.g. 0.1 for pixels in [0, 1]).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), default=None,
              help="Samples .npz with x and y. Default: MODEL's stem + .samples.npz beside it.")
@click.option("--method", type=click.Choice(("auto",) + CASCADE), default="auto", show_default=True,
              help="Sound bound method; auto escalates ibp → crown-ibp → crown → alpha-crown on undecided samples.")
@click.option("--alpha-iters", type=click.IntRange(min=0), default=20, show_default=True, help="alpha-CROWN optimisation steps.")
@click.option("--domain", type=DOMAIN, default="0,1", show_default=True, help="Valid input range LO,HI; the ball is clipped to it.")
@click.option("--radius/--no-radius", default=True, show_default=True, help="Search each sample's certified and attack radius.")
@click.option("--radius-tol", type=POSITIVE, default=1e-3, show_default=True, help="Bisection tolerance of the radius search.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N samples.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--attack-steps", type=click.IntRange(min=0), default=30, show_default=True, help="PGD steps per attack.")
@click.option("--attack-restarts", type=click.IntRange(min=1), default=2, show_default=True, help="PGD restarts at --eps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the report here (the summary table still goes to stdout).")
@click.option("--per-sample", is_flag=True, help="Include the per-sample table.")
@click.option("--fail-under", type=FRACTION, default=None, help="Exit 1 when certified accuracy is below this fraction.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@debug_option
def certify(model, eps, data_path, method, alpha_iters, domain, radius, radius_tol, limit, batch_size, attack_steps,
            attack_restarts, seed, device, fmt, output, per_sample, fail_under, quiet) -> None:
    """Certify MODEL's predictions in the L∞ ball of radius --eps around each sample.

    Each sample is verified (proved robust by a sound bound), falsified (a counterexample was found and
    re-checked), or unknown; its certified radius is the largest eps the method proves.

    \b
    Examples:
      srp-audit certify fixtures/mnist_cnn.onnx --eps 0.02
      srp-audit certify model.onnx --eps 0.1 --data test.npz --per-sample
      srp-audit certify model.onnx --eps 0.1 --format json -o report.json --fail-under 0.8
    """
    graph = load_model(model)
    if data_path is None:
        data_path = samples_path_for(model)
        if not os.path.exists(data_path):
            raise DataError(f"no samples given: pass --data FILE.npz (or put them beside the model as '{data_path}')")
    samples = load_samples(data_path, graph.input_shape, graph.num_classes, domain, limit)
    options = CertifyOptions(
        eps=eps, method=method, alpha_iters=alpha_iters, domain=domain, radius=radius, radius_tol=radius_tol, attack_steps=attack_steps,
        attack_restarts=attack_restarts, batch_size=batch_size, seed=seed, device=device,
    )
    bar = Progress("certify", enabled=None if not quiet else False)
    try:
        result = run_certify(graph, samples.x, samples.y, options, progress=bar)
    finally:
        bar.close()
    text = render(result, model, fmt, per_sample)
    if output:
        _write_text(output, text)
        click.echo(render(result, model, "table", False), nl=False)
    else:
        click.echo(text, nl=False)
    if fail_under is not None and result.certified_accuracy < fail_under:
        click.echo(f"gate failed: certified accuracy {100 * result.certified_accuracy:.1f} % is below {100 * fail_under:.1f} %", err=True)
        click.get_current_context().exit(EXIT_GATE)


def _write_text(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DataError(f"cannot write '{path}': folder '{folder}' does not exist")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
