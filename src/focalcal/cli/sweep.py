"""``focalcal sweep FAMILY``: an experiment family over seeds, on this machine or a cluster (see
:mod:`focalcal.experiments.sweep`)."""

from __future__ import annotations

import argparse

from ..engine.device import resolve_device
from ..experiments.sweep import (
    ELSEWHERE,
    LAUNCHERS,
    check_gpus,
    check_slurm,
    commands,
    focalcal_args,
    plan,
    run_local,
    run_submitit,
    state,
    write_summary,
)
from .common import add_data_args, add_key_values_arg, echo, key_values, positive_int


def seeds(text: str) -> list[int]:
    """``"1-3"`` -> [1, 2, 3]; ``"1,4,7"`` -> [1, 4, 7]."""
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.partition("-")
            out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 1-3 or 1,2,5; got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("no seeds given")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "sweep",
        help="run an experiment family over seeds: skips finished runs, resumes interrupted ones",
        description="Run every experiment of FAMILY (see `focalcal list`) for each seed into OUT/<dataset>/<model>/"
        "<loss>/seed<N>: train (with evaluation), then score the family's OOD sets. Running the same command "
        "again skips finished runs and resumes interrupted ones.",
    )
    s.add_argument("family", help="an experiment family, e.g. cpu or paper_cifar")
    s.add_argument("--seeds", type=seeds, default=[1], help="seeds, e.g. 1-3 or 1,2,5 (default 1)")
    s.add_argument("--out", required=True, help="root folder of the sweep's runs")
    add_key_values_arg(
        s,
        "--only",
        "only these datasets / models / losses, e.g. --only loss=ce,flsd53 (repeatable)",
        metavar="AXIS=A,B",
    )
    add_key_values_arg(s, "--set", "override a config key of every run, e.g. --set epochs=10 (repeatable)")
    s.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="local",
        help="local (default): on this machine; slurm: a SLURM job array via submitit; "
        "submitit-local: the same through submitit's local executor",
    )
    s.add_argument("--jobs", type=positive_int, default=1, help="runs at once (default 1)")
    s.add_argument("--gpus", default="", help="local launcher: comma-separated GPU ids, one per concurrent run")
    s.add_argument(
        "--nproc-per-run",
        type=positive_int,
        default=1,
        help="processes (GPUs) per run, launched with torchrun (DistributedDataParallel)",
    )
    s.add_argument("--partition", help="SLURM partition")
    s.add_argument("--timeout-min", type=positive_int, default=24 * 60, help="SLURM time limit per job (minutes)")
    s.add_argument("--no-wait", action="store_true", help="SLURM: submit and return without waiting")
    s.add_argument("--no-ood", action="store_true", help="do not score the family's OOD sets")
    s.add_argument("--dry-run", action="store_true", help="list the jobs and what each still needs; run nothing")
    add_data_args(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.device is not None:  # one line before planning; SLURM's nodes, not this machine, need the GPU
        resolve_device(args.device, here=args.launcher != "slurm")
    only = {k: [x.strip() for x in v.split(",") if x.strip()] for k, v in key_values(args.only, "--only").items()}
    jobs = plan(
        args.family,
        args.seeds,
        args.out,
        only=only,
        overrides=key_values(args.set, "--set"),
        nproc=args.nproc_per_run,
        data_dir=args.data_dir,
        device=args.device,
        ood=not args.no_ood,
    )
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    if args.launcher == "local":
        check_gpus(gpus)  # before any job starts (a dry run included)
    if args.dry_run:
        for job in jobs:
            steps = [" ".join(focalcal_args(c)[:2]) for c in commands(job)] if state(job) != "busy" else []
            echo(f"{state(job):8s} {job.name}: {', '.join(steps) or 'nothing to do'}")
        return 0
    if args.launcher == "slurm":
        check_slurm()  # one line before anything is submitted or written
    echo(f"{len(jobs)} runs of {args.family} into {args.out} ({args.launcher}, {args.jobs} at once)")
    if args.launcher == "local":
        results = run_local(jobs, args.out, parallel=args.jobs, gpus=gpus, echo=echo)
    else:
        results = run_submitit(
            jobs,
            args.out,
            cluster="slurm" if args.launcher == "slurm" else "local",
            parallel=args.jobs,
            timeout_min=args.timeout_min,
            partition=args.partition,
            gpus_per_job=args.nproc_per_run if args.device != "cpu" else 0,
            wait=not args.no_wait,
            echo=echo,
        )
    path = write_summary(args.out, results)
    failed = [r for r in results if r.status == "failed"]
    elsewhere = [r for r in results if r.status == ELSEWHERE]
    done = len(results) - len(failed) - len(elsewhere)
    echo(
        f"{done} of {len(results)} runs done"
        + (f", {len(elsewhere)} running elsewhere (run the sweep again once they end)" if elsewhere else "")
        + f"; summary: {path}"
    )
    for r in failed + elsewhere:
        echo(f"  {r.status}: {r.name}: {r.message}")
    return 1 if failed else 0
