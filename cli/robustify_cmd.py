"""`srp-audit robustify`: fine-tune a model with SingleProp (or IBP / CROWN-IBP), audit before and after, write it."""

from __future__ import annotations

import os
import sys

import click
from tabulate import tabulate

from srp_audit.bounds import CASCADE
from srp_audit.bounds.singleprop import VARIANTS
from srp_audit.certify import CertifyOptions
from srp_audit.data import load_samples
from srp_audit.device import resolve_device
from srp_audit.formats import check_output_path
from srp_audit.parallel import main_process
from srp_audit.report.summary import clopper_pearson
from srp_audit.robustify import REGULARIZERS, Interrupted, RobustifyOptions
from srp_audit.robustify_audit import robustify_audited, split_data, split_shards
from srp_audit.shards import open_shards
from srp_audit.slots import refuse_fixed_batch

from .errors import debug_option
from .model_options import load, model_options
from .params import DOMAIN, FRACTION, LEARNING_RATE, POSITIVE, RADIUS


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", "data_path", type=click.Path(), required=True, multiple=True,
              help="Training .npz (x, y); repeat it, or name a folder, for data in shards, read one at a time.")
@click.option("--eps", type=RADIUS, required=True, help="Target L∞ radius to train for (> 0).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Where to write the model: .onnx, .pt2 (torch.export) or .safetensors (the graph's state dict).")
@click.option("--epochs", type=POSITIVE, default=None, help="Epochs (default 10 unless --max-time is given).")
@click.option("--max-time", type=POSITIVE, default=None, help="Wall-clock budget in seconds; the schedule scales to it.")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--lr", type=LEARNING_RATE, default=1e-3, show_default=True, help="Adam learning rate (÷10 at 80 % and 90 % of the budget).")
@click.option("--regularizer", type=click.Choice(REGULARIZERS), default="singleprop", show_default=True)
@click.option("--variant", type=click.Choice(VARIANTS), default="fastlin", show_default=True, help="SingleProp's ReLU rule.")
@click.option("--warmup", default="0", show_default=True, help="eps = 0, K = 1 for this long: steps (500), epochs (2ep) or budget share (10%).")
@click.option("--ramp", default="50%", show_default=True, help="eps grows to --eps and K falls to --k-final over this span.")
@click.option("--k-final", type=FRACTION, default=0.5, show_default=True, help="Final weight of the clean loss.")
@click.option("--ada", is_flag=True, help="Adaptive K on the held-out split (K = ΣL_spec / (ΣL_spec + γ ΣL_fit)).")
@click.option("--gamma", type=POSITIVE, default=10.0, show_default=True, help="γ of --ada.")
@click.option("--val-split", type=FRACTION, default=0.1, show_default=True, help="Share of --data held out (for --ada and the audit).")
@click.option("--select-split", type=FRACTION, default=0.0, show_default=True,
              help="Share of --data set aside to choose the model written: the one IBP certifies most of it for, among "
                   "the models at each epoch's end with eps at its target and the last (0: the last model).")
@click.option("--method", type=click.Choice(("auto",) + CASCADE), default="auto", show_default=True, help="Sound method for the before/after audit.")
@click.option("--audit-data", type=click.Path(dir_okay=False), default=None, help="Audit on this .npz instead of the held-out split.")
@click.option("--audit-samples", type=click.IntRange(min=1), default=200, show_default=True,
              help="At most this many audit samples; with --max-time, as many of them as fit its audit share (about 15 %).")
@click.option("--audit-radius/--no-audit-radius", default=None,
              help="Search certified radii in the audit (about 5× its cost; default: on, off with --max-time).")
@click.option("--augment", default="auto", show_default=True,
              help="Move each training image by a random offset of up to N pixels: shift:N, none, or auto (shift:1 on images).")
@click.option("--finish", default="auto", show_default=True,
              help="Train the last SPAN with another regulariser, REG:SPAN (ibp:50%: the last half with IBP), none, or auto: "
                   "after the ramp, IBP if it certifies far more than SingleProp estimates robust.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, help="Save a checkpoint (OUTPUT.ckpt) every N steps.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT.ckpt.")
@click.option("--domain", type=DOMAIN, default="0,1", show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--force", is_flag=True, help="Allow -o to name one of the inputs (it is overwritten).")
@click.option("-q", "--quiet", is_flag=True)
@model_options
@debug_option
def robustify_cmd(model, data_path, eps, output, epochs, max_time, batch_size, lr, regularizer, variant, warmup, ramp,
                  k_final, ada, gamma, val_split, select_split, method, audit_data, audit_samples, audit_radius, augment, finish, checkpoint_every,
                  resume, domain, seed, device, force, quiet, model_opts) -> None:
    """Fine-tune MODEL to be provably more robust at --eps, then audit it before and after.

    SingleProp adds one forward pass of a radius beside the ordinary one; its worst-case logits enter the loss
    K·CE(clean) + (1 − K)·CE(worst case). Its robustness estimate is a training signal, never a certificate:
    the audit uses the sound methods.

    \b
    Examples:
      srp-audit robustify fixtures/mnist_cnn.onnx --data fixtures/mnist_train_4k.npz --eps 0.1 --max-time 180 -o robust.onnx
      srp-audit robustify model.onnx --data train.npz --eps 0.1 --epochs 20 --regularizer ibp -o robust.pt2
      srp-audit robustify model.onnx --data shards/ --eps 0.1 --max-time 600 -o robust.onnx
    """
    check_output_path(output, (model, *data_path) + ((audit_data,) if audit_data else ()), force)  # before any work
    dev = resolve_device(device)
    graph = load(model, model_opts)
    refuse_fixed_batch(graph)
    audit = load_samples(audit_data, graph.input_shape, graph.num_classes, domain, audit_samples) if audit_data else None
    if len(data_path) == 1 and not os.path.isdir(data_path[0]):  # one file: in memory
        train = load_samples(data_path[0], graph.input_shape, graph.num_classes, domain)
        data = split_data(train, val_split, seed, data_path[0], audit, audit_data or "", audit_samples, select_split)
    else:
        shards = open_shards(data_path, graph.input_shape, graph.num_classes, domain)
        data = split_shards(shards, val_split, seed, audit, audit_data or "", audit_samples, select_split)
    opts = RobustifyOptions(
        eps=eps, epochs=epochs, max_time=max_time, batch_size=batch_size, lr=lr, regularizer=regularizer, variant=variant,
        warmup=warmup, ramp=ramp, k_final=k_final, ada=ada, gamma=gamma, val_split=val_split, seed=seed, domain=domain,
        device=str(dev), checkpoint_every=checkpoint_every, checkpoint_path=output + ".ckpt", resume=resume, augment=augment, finish=finish,
    )
    opts.validate()
    if audit_radius is None:  # a budgeted run spends its audit share on samples, not on radii
        audit_radius = max_time is None
    audit_opts = CertifyOptions(eps=eps, method=method, domain=domain, radius=audit_radius, seed=seed, device=str(dev))
    show = (not quiet) and sys.stderr.isatty() and main_process()
    try:
        run = robustify_audited(graph, data, opts, audit_opts, output, _progress_line if show else None,
                                (lambda when: _audit_line(when, model, len(data.audit), method)) if show else None)
    except Interrupted as e:
        where = f"; checkpoint saved in {e.checkpoint} — rerun with --resume to continue" if e.checkpoint else ""
        if main_process():
            click.echo(f"\ninterrupted: nothing was written to {output}{where}", err=True)
        click.get_current_context().exit(130)
    if run is None:  # a rank other than 0 under torchrun
        return
    _print_report(run, model, output, _audit_name(run, data.audit_name), regularizer, variant, method, eps, audit_radius)
    if run.warning:
        click.echo(f"warning: {run.warning}", err=True)


def _progress_line(p) -> None:
    click.echo(f"\rstep {p.step:6d}  ep {p.epoch:5.1f}  eps {p.eps:.4f}  K {p.k:.2f}  loss {p.loss:.3f}  "
               f"clean {100 * p.clean_acc:5.1f} %  est. robust {100 * p.robust_acc:5.1f} %  {p.elapsed:6.1f} s ",
               err=True, nl=False)


def _audit_line(when: str, model: str, n: int, method: str) -> None:
    if when == "before":
        click.echo(f"auditing {model} on {n} samples ({method}) …", err=True)
    else:
        click.echo("", err=True)


def _print_report(run, model: str, output: str, audit_name: str, regularizer: str, variant: str, method: str, eps: float,
                  audit_radius: bool) -> None:
    before, after, result = run.before, run.after, run.result
    rows = [
        ("clean accuracy", _pct(before.clean_accuracy), _pct(after.clean_accuracy)),
        (f"certified accuracy ({method}, eps {eps:g})", _pct(before.certified_accuracy), _pct(after.certified_accuracy)),
        ("  95 % interval (exact binomial)", _interval(before), _interval(after)),
        ("falsified", before.count("falsified"), after.count("falsified")),
    ]
    if audit_radius:
        rows.append(("mean certified radius", f"{before.radii().mean():.4f}", f"{after.radii().mean():.4f}"))
    budget = f"{result.steps} steps, {result.epochs:.1f} epochs, {result.elapsed:.0f} s"
    click.echo(f"srp-audit robustify {model} → {output}  ({regularizer}{'/' + variant if regularizer == 'singleprop' else ''}, {budget})")
    if result.finish_choice is not None:
        click.echo(result.finish_choice.describe())
    if result.selection is not None:
        click.echo(result.selection.describe())
    click.echo(f"audit: {audit_name}")
    click.echo(tabulate(rows, headers=["", "before", "after"], tablefmt="simple"))
    click.echo(f"wrote {output}")


def _audit_name(run, name: str) -> str:
    """What was audited: the split's name, and how many of its samples the budget let the audits take."""
    if run.before.n == run.offered:
        return name
    return f"{name}; {run.before.n} of them drawn at random, as many as fit the audits' share of --max-time"


def _interval(result) -> str:
    """The Clopper–Pearson interval of the certified accuracy: the audit is a sample of the data."""
    lo, hi = clopper_pearson(result.count("verified"), result.n)
    return f"{100 * lo:.1f}–{100 * hi:.1f} %"


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"
