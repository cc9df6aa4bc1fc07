"""`srp-audit certify`: verdicts and certified radii for a model's samples, and reports CI can gate on."""

from __future__ import annotations

import datetime
import os
import platform

import click
import torch

from srp_audit.atomic import prepare_output, write_text_atomic
from srp_audit.bounds import CASCADE
from srp_audit.bounds.progress import reporting
from srp_audit.certificate import sha256_of
from srp_audit.certificate_trees import certify_certificate
from srp_audit.certify import CertifyOptions, certify_sharded, check_class_scores
from srp_audit.data import load_samples, peek_sample_shape, samples_path_for
from srp_audit.errors import DataError, UsageError
from srp_audit.parallel import launched
from srp_audit.report import FORMATS, append_step_summary, format_for, render, step_summary_problem
from srp_audit.report.plot import check_plot_path, write_plot
from srp_audit.report.summary import gate_failures
from srp_audit.slots import one_sample_per_slot
from srp_audit.spec import NORMS

from .errors import EXIT_GATE, debug_option
from .model_options import load, model_options
from .params import BATCH, DOMAIN, EPS, EPS_LIST, FRACTION, MEMORY, POSITIVE, check_eps_in_domain
from .progress import ProgressBar


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--eps", type=EPS_LIST, required=True,
              help="Radius in the model's input units (0.1 for pixels in [0, 1]); a list 0.005,0.01,0.02 sweeps several.")
@click.option("--norm", type=click.Choice(NORMS), default="inf", show_default=True,
              help="The perturbation ball: L∞ (inf), L2 or L1, intersected with --domain.")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), default=None,
              help="Samples .npz with x and y. Default: MODEL's stem + .samples.npz beside it.")
@click.option("--method", type=click.Choice(("auto",) + CASCADE), default="auto", show_default=True,
              help=f"Sound bound method; auto escalates {' → '.join(CASCADE)} on undecided samples.")
@click.option("--alpha-iters", type=click.IntRange(min=0), default=20, show_default=True, help="alpha-CROWN optimisation steps.")
@click.option("--bab-domains", type=click.IntRange(min=0), default=128, show_default=True,
              help="auto, L∞: ReLU branch and bound on samples still undecided whose bound nearly proves them, up to this "
                   "many domains each (0: off).")
@click.option("--bab-time", type=POSITIVE, default=2.0, show_default=True,
              help="Seconds of branch and bound per such sample (a bound pass under way finishes first).")
@click.option("--domain", type=DOMAIN, default="0,1", show_default=True, help="Valid input range LO,HI; the ball is clipped to it.")
@click.option("--radius/--no-radius", default=True, show_default=True, help="Search each sample's certified and attack radius.")
@click.option("--radius-tol", type=POSITIVE, default=1e-3, show_default=True, help="Tolerance of the radius search.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N samples.")
@click.option("--batch-size", type=BATCH, default="256", show_default=True,
              help="Samples per batch, or auto (the largest that fits on a GPU; 256 on a CPU). Out-of-memory halves it.")
@click.option("--memory-budget", type=MEMORY, default="auto", show_default=True,
              help="Memory a batch may take (8G, 512M): batches shrink to fit it; auto is half of what is free at the start.")
@click.option("--attack-steps", type=click.IntRange(0, 1_000_000), default=30, show_default=True, help="PGD steps per attack.")
@click.option("--attack-restarts", type=click.IntRange(min=1), default=2, show_default=True, help="PGD restarts at --eps.")
@click.option("--attack-early-stop/--no-attack-early-stop", default=True, show_default=True,
              help="Drop a sample from a restart once its margin stops falling fast enough to reach 0 in the steps left.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Report on stdout.")
@click.option("-o", "--output", "outputs", multiple=True, type=click.Path(dir_okay=False),
              help="Also write a report; the type follows the suffix (.txt .md .json .xml=JUnit .html). Repeatable.")
@click.option("--per-sample", is_flag=True, help="Include the per-sample table (table/markdown).")
@click.option("--by-class", is_flag=True, help="Include the per-class breakdown.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Draw accuracy vs eps and the radius histogram (.svg, or .png with srp-audit[plot]).")
@click.option("--certificate", "certificate_path", type=click.Path(dir_okay=False), default=None,
              help="Write a proof certificate of every verified verdict here (.npz); check it with 'srp-audit check'.")
@click.option("--fail-under", type=FRACTION, default=None, help="Exit 1 when certified accuracy is below this fraction.")
@click.option("--fail-under-radius", type=EPS, default=None, help="Exit 1 when the median certified radius is below this.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@model_options
@debug_option
def certify(model, eps, norm, data_path, method, alpha_iters, bab_domains, bab_time, domain, radius, radius_tol, limit, batch_size,
            memory_budget, attack_steps,
            attack_restarts, attack_early_stop, seed, device, fmt, outputs, per_sample, by_class, plot, certificate_path, fail_under,
            fail_under_radius, quiet, model_opts) -> None:
    """Certify MODEL's predictions in the --norm ball (L∞ by default) of radius --eps around each sample.

    Each sample is verified (proved robust by a sound bound), falsified (a counterexample was found and
    re-checked), or unknown; its certified radius is the largest eps the method proves.

    \b
    Examples:
      srp-audit certify fixtures/mnist_cnn.onnx --eps 0.02
      srp-audit certify model.onnx --eps 0.1 --data test.npz --per-sample --by-class
      srp-audit certify model.onnx --eps 0.005,0.01,0.02 -o report.json -o report.xml -o report.html
      srp-audit certify model.onnx --eps 0.1 --fail-under 0.8 --fail-under-radius 0.05
      srp-audit certify model.onnx --eps 0.5 --norm 2
      srp-audit certify model.onnx --eps 0.02 --no-radius --certificate proofs.npz
    """
    inputs = (model, data_path or samples_path_for(model))  # the default samples file is an input too
    formats = _checked_outputs(inputs, outputs, plot, certificate_path)
    step_summary = _usable_step_summary(inputs)
    if norm == "inf":
        check_eps_in_domain(eps, domain)
    eps_main = max(eps)
    sweep = tuple(sorted(eps)) if len(eps) > 1 else ()
    _check_radius_needs(radius, bool(sweep), fail_under_radius is not None or bool(plot))
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    graph = load(model, model_opts, data=data_path)
    if data_path is None:
        data_path = samples_path_for(model)
        if not os.path.exists(data_path):
            raise DataError(f"no samples given: pass --data FILE.npz (or put them beside the model as '{data_path}')")
    # a fixed batch of B slots is certified one sample per slot (the first slot's scores): samples of one slot's shape
    loaded = graph
    graph, slot_note = one_sample_per_slot(graph, peek_sample_shape(data_path) or graph.input_shape[1:])
    check_class_scores(graph)  # a model without one score per class is refused before its samples are read
    samples = load_samples(data_path, graph.input_shape, graph.num_classes, domain, limit)
    options = CertifyOptions(
        eps=eps_main, method=method, alpha_iters=alpha_iters, bab_domains=bab_domains, bab_time=bab_time, domain=domain,
        radius=radius, radius_tol=radius_tol,
        attack_steps=attack_steps, attack_restarts=attack_restarts, attack_early_stop=attack_early_stop, batch_size=batch_size,
        memory_budget=memory_budget, seed=seed, device=device, sweep=sweep, norm=norm,
    )
    bar = ProgressBar("certify", enabled=None if not (quiet or launched()) else False)
    try:  # under torchrun each rank certifies its shard and rank 0 reports
        with reporting(bar.within if bar.enabled else None):
            result = certify_sharded(graph, samples.x, samples.y, options, progress=bar)
    finally:
        bar.close()
    if result is None:
        return
    for note in [n for n in (graph.meta.note, slot_note) if n] + result.notes:
        click.echo(f"note: {note}", err=True)
    meta = {"started": started, "model_sha256": sha256_of(model), "data": data_path, "data_sha256": sha256_of(data_path),
            "samples": len(samples), "python": platform.python_version(), "torch": torch.__version__}
    click.echo(render(result, model, fmt, per_sample, by_class, meta), nl=False)
    for path, kind in formats:
        write_text_atomic(path, render(result, model, kind, per_sample, by_class, meta))
    if plot:
        write_plot(result, plot)
    if certificate_path:
        cert = certify_certificate(model, loaded, samples.x, result.samples, options,
                                   reason="certificates of fixed-batch models are not written yet" if graph is not loaded else None)
        cert.write(certificate_path)
        click.echo(f"certificate: {len(cert.claims)} claims, {len(cert.uncertified)} verdicts uncertified → {certificate_path}", err=True)
    if step_summary:
        warning = append_step_summary(step_summary, render(result, model, "markdown", False, by_class))
        if warning:
            click.echo(f"warning: {warning}", err=True)
    failed = gate_failures(result, fail_under, fail_under_radius)
    if failed:
        click.echo("gate failed: " + "; ".join(failed), err=True)
        click.get_current_context().exit(EXIT_GATE)


def _checked_outputs(inputs: tuple[str, ...], outputs: tuple[str, ...], plot: str | None,
                     certificate_path: str | None) -> list[tuple[str, str]]:
    """Every output checked (type, folder, writable, not an input, not named twice) before any work: (path, format)
    per report."""
    named = [*outputs, *([plot] if plot else []), *([certificate_path] if certificate_path else [])]
    real = [os.path.realpath(p) for p in named]
    twice = next((p for p, r in zip(named, real) if real.count(r) > 1), None)
    if twice is not None:
        raise UsageError(f"'{twice}' is named as two outputs; give each output its own file")
    formats = [(prepare_output(path, "report", inputs), format_for(path)) for path in outputs]
    if plot:
        check_plot_path(plot, inputs)
    if certificate_path:
        prepare_output(certificate_path, "certificate", inputs)
    return formats


def _usable_step_summary(inputs: tuple[str, ...]) -> str | None:
    """GitHub's step summary file, if set, writable and none of the inputs; a problem with it is warned once, here,
    and the summary then skipped without a second warning."""
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    problem = step_summary_problem(step_summary) if step_summary else None
    if step_summary and not problem and any(os.path.exists(step_summary) and os.path.exists(i) and os.path.samefile(step_summary, i)
                                            for i in inputs):
        problem = f"GITHUB_STEP_SUMMARY '{step_summary}' is one of the inputs (appending would corrupt it)"
    if problem:
        click.echo(f"warning: {problem}; the step summary will be skipped", err=True)
        return None
    return step_summary


def _check_radius_needs(radius: bool, sweep: bool, radius_outputs: bool) -> None:
    """Refuse options that need the radius search with --no-radius."""
    if sweep and not radius:
        raise UsageError("an eps sweep reuses the radius search: drop --no-radius")
    if radius_outputs and not radius:
        raise UsageError("--fail-under-radius and --plot need the radius search: drop --no-radius")
