"""`srp-audit robustify`: fine-tune a model with SingleProp (or IBP / CROWN-IBP), audit before and after, write it."""

from __future__ import annotations

import os
import sys

import click
import numpy as np
import torch
from tabulate import tabulate

from srp_audit.bounds import CASCADE
from srp_audit.bounds.singleprop import VARIANTS
from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.device import resolve_device
from srp_audit.errors import SrpAuditError, UsageError
from srp_audit.ir.export import save_onnx, save_pt2, save_state_dict
from srp_audit.loaders import load_model
from srp_audit.parallel import finish, init_from_env
from srp_audit.robustify import REGULARIZERS, Interrupted, RobustifyOptions, robustify

from .model_options import load, model_options
from .errors import debug_option
from .params import DOMAIN, EPS, FRACTION, POSITIVE

OUTPUT_SUFFIXES = (".onnx", ".pt2", ".safetensors")


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", "data_path", type=click.Path(dir_okay=False), required=True, help="Training .npz (x, y).")
@click.option("--eps", type=EPS, required=True, help="Target L∞ radius to train for.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Where to write the model: .onnx, .pt2 (torch.export) or .safetensors (the graph's state dict).")
@click.option("--epochs", type=POSITIVE, default=None, help="Epochs (default 10 unless --max-time is given).")
@click.option("--max-time", type=POSITIVE, default=None, help="Wall-clock budget in seconds; the schedule scales to it.")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--lr", type=POSITIVE, default=1e-3, show_default=True, help="Adam learning rate (÷10 at 80 % and 90 % of the budget).")
@click.option("--regularizer", type=click.Choice(REGULARIZERS), default="singleprop", show_default=True)
@click.option("--variant", type=click.Choice(VARIANTS), default="fastlin", show_default=True, help="SingleProp's ReLU rule.")
@click.option("--warmup", default="0", show_default=True, help="eps = 0, K = 1 for this long: steps (500), epochs (2ep) or budget share (10%).")
@click.option("--ramp", default="50%", show_default=True, help="eps grows to --eps and K falls to --k-final over this span.")
@click.option("--k-final", type=FRACTION, default=0.5, show_default=True, help="Final weight of the clean loss.")
@click.option("--ada", is_flag=True, help="Adaptive K on the held-out split (K = ΣL_spec / (ΣL_spec + γ ΣL_fit)).")
@click.option("--gamma", type=POSITIVE, default=10.0, show_default=True, help="γ of --ada.")
@click.option("--val-split", type=FRACTION, default=0.1, show_default=True, help="Share of --data held out (for --ada and the audit).")
@click.option("--method", type=click.Choice(("auto",) + CASCADE), default="auto", show_default=True, help="Sound method for the before/after audit.")
@click.option("--audit-data", type=click.Path(dir_okay=False), default=None, help="Audit on this .npz instead of the held-out split.")
@click.option("--audit-samples", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--audit-radius/--no-audit-radius", default=True, show_default=True, help="Search certified radii in the audit.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, help="Save a checkpoint (OUTPUT.ckpt) every N steps.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT.ckpt.")
@click.option("--domain", type=DOMAIN, default="0,1", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("-q", "--quiet", is_flag=True)
@model_options
@debug_option
def robustify_cmd(model, data_path, eps, output, epochs, max_time, batch_size, lr, regularizer, variant, warmup, ramp,
                  k_final, ada, gamma, val_split, method, audit_data, audit_samples, audit_radius, checkpoint_every,
                  resume, domain, seed, device, quiet, model_opts) -> None:
    """Fine-tune MODEL to be provably more robust at --eps, then audit it before and after.

    SingleProp adds one forward pass of a radius beside the ordinary one; its worst-case logits enter the loss
    K·CE(clean) + (1 − K)·CE(worst case). Its robustness estimate is a training signal, never a certificate:
    the audit uses the sound methods.

    \b
    Examples:
      srp-audit robustify fixtures/mnist_cnn.onnx --data fixtures/mnist_train_4k.npz --eps 0.1 --max-time 180 -o robust.onnx
      srp-audit robustify model.onnx --data train.npz --eps 0.1 --epochs 20 --regularizer ibp -o robust.pt2
    """
    suffix = os.path.splitext(output)[1].lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UsageError(f"-o {output!r}: the output must end in {' or '.join(OUTPUT_SUFFIXES)}")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UsageError(f"-o {output!r}: folder {folder!r} does not exist")
    dev = resolve_device(device)
    graph = load(model, model_opts)
    train = load_samples(data_path, graph.input_shape, graph.num_classes, domain)
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = int(round(val_split * len(train)))
    val, fit = train.subset(order[:n_val]), train.subset(order[n_val:])
    if len(fit) == 0:
        raise UsageError("--val-split leaves no training samples")
    if audit_data:
        audit = load_samples(audit_data, graph.input_shape, graph.num_classes, domain, audit_samples)
        audit_name = audit_data
    elif len(val):
        audit, audit_name = val.subset(slice(0, audit_samples)), f"{len(val)} held-out samples of {data_path}"
    else:
        audit, audit_name = fit.subset(slice(0, audit_samples)), f"training samples of {data_path} (nothing held out)"
    opts = RobustifyOptions(
        eps=eps, epochs=epochs, max_time=max_time, batch_size=batch_size, lr=lr, regularizer=regularizer, variant=variant,
        warmup=warmup, ramp=ramp, k_final=k_final, ada=ada, gamma=gamma, val_split=val_split, seed=seed, domain=domain,
        device=str(dev), checkpoint_every=checkpoint_every, checkpoint_path=output + ".ckpt", resume=resume,
    )
    opts.validate()
    d = init_from_env(device)  # under torchrun: DistributedDataParallel, rank 0 audits and writes
    if d is not None:
        dev = d.device
        opts.device = str(dev)
    main_rank = d is None or d.is_main
    audit_opts = CertifyOptions(eps=eps, method=method, domain=domain, radius=audit_radius, seed=seed, device=str(dev))
    show = (not quiet) and sys.stderr.isatty() and main_rank
    if show:
        click.echo(f"auditing {model} on {len(audit)} samples ({method}) …", err=True)
    before = certify(graph, audit.x, audit.y, audit_opts) if main_rank else None

    def report(p) -> None:
        if show:
            click.echo(f"\rstep {p.step:6d}  ep {p.epoch:5.1f}  eps {p.eps:.4f}  K {p.k:.2f}  loss {p.loss:.3f}  "
                       f"clean {100 * p.clean_acc:5.1f} %  est. robust {100 * p.robust_acc:5.1f} %  {p.elapsed:6.1f} s ",
                       err=True, nl=False)

    try:
        result = robustify(graph, fit.x, fit.y, opts, val.x if len(val) else None, val.y if len(val) else None, report)
    except Interrupted as e:
        finish(d)
        where = f"; checkpoint saved in {e.checkpoint} — rerun with --resume to continue" if e.checkpoint else ""
        if main_rank:
            click.echo(f"\ninterrupted: nothing was written to {output}{where}", err=True)
        click.get_current_context().exit(130)
    finish(d)
    if not main_rank:
        return
    if show:
        click.echo("", err=True)
    _write(result.graph, output, suffix)
    after = certify(result.graph, audit.x, audit.y, audit_opts)
    rows = [
        ("clean accuracy", _pct(before.clean_accuracy), _pct(after.clean_accuracy)),
        (f"certified accuracy ({method}, eps {eps:g})", _pct(before.certified_accuracy), _pct(after.certified_accuracy)),
        ("falsified", before.count("falsified"), after.count("falsified")),
    ]
    if audit_radius:
        rows.append(("mean certified radius", f"{before.radii().mean():.4f}", f"{after.radii().mean():.4f}"))
    budget = f"{result.steps} steps, {result.epochs:.1f} epochs, {result.elapsed:.0f} s"
    click.echo(f"srp-audit robustify {model} → {output}  ({regularizer}{'/' + variant if regularizer == 'singleprop' else ''}, {budget})")
    click.echo(f"audit: {audit_name}")
    click.echo(tabulate(rows, headers=["", "before", "after"], tablefmt="simple"))
    click.echo(f"wrote {output}")


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _write(graph, output: str, suffix: str) -> None:
    """Write atomically, then read it back with our own loader and compare outputs."""
    if suffix == ".onnx":
        save_onnx(graph, output)
        back = load_model(output)
        x = torch.rand((4,) + graph.input_shape)
        with torch.no_grad():
            ok = torch.allclose(back(x), graph(x), rtol=1e-4, atol=1e-5)
        if not ok:
            raise SrpAuditError(f"{output} was written but does not reproduce the trained model; please report this")
    elif suffix == ".pt2":
        save_pt2(graph, output)
    else:
        save_state_dict(graph, output)
