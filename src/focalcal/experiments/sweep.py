"""Run an experiment family over seeds: skip finished runs, resume interrupted ones, run several at once.

A sweep is a list of :class:`Job` (one experiment, one seed, one run folder ``<out>/<dataset>/<model>/
<loss>/seed<N>``). Each job is a sequence of ordinary ``focalcal`` commands run as subprocesses, each step
skipped when its output exists: ``train --resume`` (which also evaluates), ``evaluate`` if training
finished but the report is missing, and ``ood`` for the family's OOD sets. Running the same sweep again
therefore skips finished runs and resumes interrupted ones from their last checkpoint; a run folder used by
another process (its lock is held) is reported and left alone.

Where the jobs run is the launcher's business, never a scheduler of ours:

- ``local``: up to ``jobs`` at once on this machine, from a thread pool; with GPUs each job gets one GPU of
  ``gpus`` (``CUDA_VISIBLE_DEVICES``), on the CPU the cores are shared out (``OMP_NUM_THREADS``);
  ``nproc > 1`` launches each run with ``torchrun`` (DistributedDataParallel over ``nproc`` processes);
- ``slurm`` (and ``submitit-local``, the same code path on this machine): a job array through submitit;
  a preempted or timed-out job requeues itself and resumes from its checkpoint.

A job's subprocesses die with the sweep (Linux: ``PR_SET_PDEATHSIG``), so killing a sweep never leaves
orphans holding run folders.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..engine import RunFolder, TrainConfig
from ..errors import ConfigError, FocalcalError, RunLockedError
from .presets import AXES, Experiment, apply_overrides, experiment, family_experiments, load_family

LAUNCHERS = ("local", "slurm", "submitit-local")


@dataclass(frozen=True)
class Job:
    """One run of a sweep (picklable: it travels to cluster nodes)."""

    experiment: str
    seed: int
    run_dir: str
    ood: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    nproc: int = 1
    data_dir: str | None = None
    device: str | None = None

    @property
    def name(self) -> str:
        return f"{self.experiment}/seed{self.seed}"


#: A job's status when another process holds it (another sweep, or a ``focalcal`` command on its folder).
ELSEWHERE = "running elsewhere"


@dataclass
class JobResult:
    name: str
    run_dir: str
    status: str  # "done" (already finished), "finished", "failed", ELSEWHERE (another process holds it)
    seconds: float = 0.0
    message: str = ""


def plan(
    family: str,
    seeds: Sequence[int],
    out: str | Path,
    *,
    only: dict[str, Sequence[str]] | None = None,
    overrides: dict[str, Any] | None = None,
    nproc: int = 1,
    data_dir: str | None = None,
    device: str | None = None,
    ood: bool = True,
) -> list[Job]:
    """The jobs of ``family`` x ``seeds`` (optionally only some datasets/models/losses), in family order."""
    load_family(family)
    only = {k: list(v) for k, v in (only or {}).items()}
    unknown = sorted(set(only) - set(AXES))
    if unknown:
        raise ConfigError(f"--only can select by {', '.join(AXES)}; got {', '.join(unknown)}")
    exps: list[Experiment] = [
        e
        for e in family_experiments(family)
        if all(getattr(e, {"loss": "loss_key"}.get(k, k)) in v for k, v in only.items())
    ]
    if not exps:
        raise ConfigError(f"no experiment of family {family} matches {only}")
    for e in exps:  # bad --set keys or values: one line now, as the runs' own validation would say
        TrainConfig.from_dict(apply_overrides(e.config, overrides or {})).validate()
    return [
        Job(
            e.name,
            int(s),
            str(e.run_dir(out, int(s))),
            tuple(e.ood) if ood else (),
            dict(overrides or {}),
            nproc,
            data_dir,
            device,
        )
        for e in exps
        for s in seeds
    ]


def expected_config(job: Job) -> dict[str, Any]:
    """The protocol the job's run must have: its experiment with its seed and the ``--set`` overrides
    (:func:`~focalcal.experiments.presets.apply_overrides`, as ``focalcal train --set`` applies them)."""
    config = apply_overrides(experiment(job.experiment).config, job.overrides)
    return TrainConfig.from_dict({**config, "seed": job.seed}).protocol_dict()


def state(job: Job) -> str:
    """``"done"`` (trained, evaluated and OOD-scored), ``"partial"`` (some of it), ``"new"``, ``"busy"`` (another
    process holds the folder) or ``"mismatch"`` (the folder holds a run of another configuration). Reads only:
    a folder that does not exist yet is not created."""
    run = RunFolder(job.run_dir)
    if not run.path.is_dir():
        return "new"
    try:
        with run.lock():
            pass
    except RunLockedError:
        return "busy"
    if run.has_config():
        try:
            saved = TrainConfig.from_dict(run.read_config()).protocol_dict()
        except FocalcalError:
            return "mismatch"
        if saved != expected_config(job):
            return "mismatch"
    trained = run.has_final()
    if trained and run.has_report() and (run.has_ood() or not job.ood):
        return "done"
    return "partial" if run.has_checkpoint() else "new"


# -- one job ---------------------------------------------------------------------------------------------
def _cli(nproc: int) -> list[str]:
    if nproc > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "focalcal.cli.main",
        ]
    return [sys.executable, "-m", "focalcal.cli.main"]


def _common(job: Job) -> list[str]:
    args = []
    if job.data_dir:
        args += ["--data-dir", job.data_dir]
    if job.device:
        args += ["--device", job.device]
    return args


def commands(job: Job) -> list[list[str]]:
    """The ``focalcal`` commands still needed to finish ``job`` (empty when it is done)."""
    run = RunFolder(job.run_dir)
    cmds = []
    if not run.has_final() or not run.has_report():
        if run.has_final():
            cmds.append(_cli(job.nproc) + ["evaluate", job.run_dir] + _common(job))
        else:
            train = ["train", "--preset", job.experiment, "--seed", str(job.seed), "--out", job.run_dir]
            # --resume only where there is a run to resume: train refuses it elsewhere
            train += ["--resume", "--no-progress"] if run.is_run() or run.has_checkpoint() else ["--no-progress"]
            for key, value in job.overrides.items():
                train += ["--set", f"{key}={value}"]
            cmds.append(_cli(job.nproc) + train + _common(job))
    if job.ood and not run.has_ood():
        sets = [a for s in job.ood for a in ("--ood", s)]
        cmds.append(_cli(1) + ["ood", job.run_dir, *sets] + _common(job))
    return cmds


def focalcal_args(cmd: list[str]) -> list[str]:
    """The ``focalcal`` arguments of a command (after ``-m focalcal.cli.main``, torchrun or not)."""
    return cmd[cmd.index("focalcal.cli.main") + 1 :]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def job_lock(log: Path | None) -> Iterator[bool]:
    """Hold the job's lock for the ``with`` block: an exclusive ``flock`` on its log (released by the OS when
    the process ends, however it ends). Yields ``False``, holding nothing, when another process (another
    sweep on the same ``--out``) holds it; ``True`` otherwise (and always without a log)."""
    if log is None:
        yield True
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # closing the file releases the lock


def run_job(job: Job, env: dict[str, str] | None = None, log: Path | None = None) -> JobResult:
    """Run what ``job`` still needs, in order; each command's output goes to ``log`` (appended).

    The job's lock (:func:`job_lock`) is held meanwhile, so two sweeps on one ``--out`` never run one job
    twice or interleave its log: the second reports it as :data:`ELSEWHERE`, as it does a job whose run folder
    another process holds.
    """
    with job_lock(log) as mine:
        if not mine:
            return JobResult(job.name, job.run_dir, ELSEWHERE, 0.0, f"another sweep is running it (it holds {log})")
        return _run_job(job, env, log)


def _run_job(job: Job, env: dict[str, str] | None, log: Path | None) -> JobResult:
    t0 = time.perf_counter()
    now = state(job)
    if now == "busy":
        return JobResult(job.name, job.run_dir, ELSEWHERE, 0.0, "its run folder is in use by another process")
    if now == "mismatch":
        return JobResult(
            job.name,
            job.run_dir,
            "failed",
            0.0,
            "its run folder holds a run of another configuration (other --set values?): use another "
            "--out, or delete the folder",
        )
    todo = commands(job)
    if not todo:
        return JobResult(job.name, job.run_dir, "done")
    full_env = {**os.environ, **(env or {})}
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    for cmd in todo:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as f:
                f.write(f"$ {' '.join(cmd)}\n")
                f.flush()
                rc = subprocess.run(
                    cmd, env=full_env, stdout=f, stderr=subprocess.STDOUT, preexec_fn=preexec
                ).returncode
        else:
            rc = subprocess.run(cmd, env=full_env, preexec_fn=preexec).returncode
        if rc != 0:
            if state(job) == "busy":  # another process took the run folder first: not a failure of this job
                return JobResult(
                    job.name,
                    job.run_dir,
                    ELSEWHERE,
                    time.perf_counter() - t0,
                    "its run folder is in use by another process",
                )
            where = f"; see {log}" if log else ""
            return JobResult(
                job.name,
                job.run_dir,
                "failed",
                time.perf_counter() - t0,
                f"`focalcal {' '.join(focalcal_args(cmd)[:2])} ...` exited with status {rc}{where}",
            )
    return JobResult(job.name, job.run_dir, "finished", time.perf_counter() - t0)


class JobRunner:
    """The callable submitit runs on a node; ``checkpoint`` makes a preempted job requeue itself (the run then
    resumes from its last checkpoint)."""

    def __init__(self, logs: str):
        self.logs = logs

    def __call__(self, job: Job) -> JobResult:
        return run_job(job, log=Path(self.logs) / f"{job.name.replace('/', '_')}.log")

    def checkpoint(self, job: Job):
        import submitit

        return submitit.helpers.DelayedSubmission(JobRunner(self.logs), job)


# -- launchers -------------------------------------------------------------------------------------------
def _log_path(out: Path, job: Job) -> Path:
    return out / "logs" / f"{job.name.replace('/', '_')}.log"


def check_gpus(gpus: Sequence[str]) -> None:
    """Refuse ``--gpus`` this machine cannot honour (no CUDA; an index beyond its GPUs), before any job starts.

    Raises:
        ConfigError: one line naming the GPUs asked for and what the machine has.
    """
    if not gpus:
        return
    import torch

    asked = ",".join(gpus)
    if not torch.cuda.is_available():
        raise ConfigError(
            f"--gpus {asked}: CUDA is not available on this machine (torch {torch.__version__}, no usable GPU); "
            "leave out --gpus to run on the CPU"
        )
    count = torch.cuda.device_count()
    beyond = [g for g in gpus if g.isdigit() and int(g) >= count]
    if beyond and "CUDA_VISIBLE_DEVICES" not in os.environ:
        raise ConfigError(
            f"--gpus {asked}: this machine has {count} GPU(s), 0..{count - 1}; no GPU {', '.join(beyond)}"
        )


def cpu_threads_per_job(parallel: int) -> int:
    """Torch threads for each of ``parallel`` concurrent CPU jobs: the cores shared out, never more than a
    ``OMP_NUM_THREADS`` the user set (a sweep started with ``OMP_NUM_THREADS=1`` runs every job on one thread)."""
    cores = max(1, (os.cpu_count() or 1) // parallel)
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(cores, int(given)) if given.isdigit() and int(given) >= 1 else cores


def run_local(
    jobs: Sequence[Job],
    out: str | Path,
    *,
    parallel: int = 1,
    gpus: Sequence[str] = (),
    echo: Callable[[str], None] = lambda _m: None,
) -> list[JobResult]:
    """Run ``jobs`` on this machine, ``parallel`` at once.

    With ``gpus``, the GPUs are dealt out in groups of each job's ``nproc`` (``CUDA_VISIBLE_DEVICES``), one
    group per concurrent job: ``gpus=("0","1","2","3")`` runs four one-GPU jobs, or two two-GPU torchrun jobs,
    at once. Without GPUs the CPU cores are shared out (``OMP_NUM_THREADS``, at most the user's own:
    :func:`cpu_threads_per_job`).
    """
    out = Path(out)
    check_gpus(gpus)
    tokens: queue.Queue[str | None] = queue.Queue()
    nproc = max((j.nproc for j in jobs), default=1)
    if gpus:
        groups = [",".join(gpus[i : i + nproc]) for i in range(0, len(gpus) - nproc + 1, nproc)]
        if not groups:
            raise ConfigError(f"each run needs {nproc} GPUs but only {len(gpus)} were given (--gpus)")
        parallel = min(parallel, len(groups)) if parallel > 1 else len(groups)
        for g in groups[:parallel]:
            tokens.put(g)
    else:
        for _ in range(parallel):
            tokens.put(None)
    cores = cpu_threads_per_job(parallel)
    lock = threading.Lock()

    def one(job: Job) -> JobResult:
        gpu = tokens.get()
        try:
            env = {"OMP_NUM_THREADS": str(cores)}
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            with lock:
                echo(f"start  {job.name}" + (f" on GPU(s) {gpu}" if gpu is not None else ""))
            result = run_job(job, env=env, log=_log_path(out, job))
            with lock:
                echo(f"{result.status:6s} {job.name} ({result.seconds:.0f}s) {result.message}")
            return result
        finally:
            tokens.put(gpu)

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, jobs))


def check_slurm() -> None:
    """Raise :class:`~focalcal.errors.ConfigError` unless SLURM's commands (``sbatch``, ``srun``) are on the
    ``PATH``, as submitit's SLURM executor needs (it would fail with a traceback)."""
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if missing:
        raise ConfigError(
            f"--launcher slurm: SLURM is not available here (no {' or '.join(missing)} on the PATH); run the sweep "
            "on a SLURM cluster's login node, or on this machine with --launcher local (or submitit-local)"
        )


def run_submitit(
    jobs: Sequence[Job],
    out: str | Path,
    *,
    cluster: str,
    parallel: int,
    timeout_min: int = 60 * 24,
    partition: str | None = None,
    gpus_per_job: int = 0,
    cpus_per_job: int | None = None,
    wait: bool = True,
    echo: Callable[[str], None] = lambda _m: None,
) -> list[JobResult]:
    """Submit ``jobs`` as one submitit job array (``cluster``: ``"slurm"`` or ``"local"``).

    Raises:
        ConfigError: submitit is not installed, or ``cluster="slurm"`` where SLURM is not (:func:`check_slurm`).
    """
    if cluster == "slurm":
        check_slurm()
    try:
        import submitit
    except ImportError:
        raise ConfigError("the slurm launchers need submitit: pip install 'focalcal[cluster]'") from None
    out = Path(out)
    executor = submitit.AutoExecutor(folder=str(out / "submitit" / "%j"), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": timeout_min, "slurm_array_parallelism": parallel, "name": "focalcal"}
    if cluster == "slurm":
        params.update({"slurm_partition": partition} if partition else {})
        params.update({"gpus_per_node": gpus_per_job} if gpus_per_job else {})
        params.update({"cpus_per_task": cpus_per_job} if cpus_per_job else {})
    executor.update_parameters(**params)
    runner = JobRunner(str(out / "logs"))
    handles = executor.map_array(runner, list(jobs))
    echo(f"submitted {len(handles)} jobs as array {handles[0].job_id.split('_')[0] if handles else '-'}")
    if not wait:
        return [
            JobResult(j.name, j.run_dir, "submitted", 0.0, f"submitit job {h.job_id}") for j, h in zip(jobs, handles)
        ]
    results = []
    for job, h in zip(jobs, handles):
        try:
            results.append(h.result())
        except Exception as exc:  # a failed node job: report it, keep collecting the others
            results.append(JobResult(job.name, job.run_dir, "failed", 0.0, str(exc).splitlines()[-1][:200]))
        echo(f"{results[-1].status:6s} {job.name} {results[-1].message}")
    return results


def write_summary(out: str | Path, results: Sequence[JobResult]) -> Path:
    """Record ``results`` in ``<out>/sweep.json``, every job's latest status (the sweep's own file; run folders
    are the runs'), and return its path.

    Safe under concurrency: the file is read, updated and rewritten under an exclusive lock
    (``<out>/.sweep.lock``), so concurrent sweeps on one ``--out`` keep each other's entries; a job another
    process was running (:data:`ELSEWHERE`) never replaces a record of it as finished or done.
    """
    path = Path(out) / "sweep.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".sweep.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        try:
            earlier = json.loads(path.read_text()) if path.is_file() else []
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            earlier = []  # a damaged summary: the records below replace it
        records = {r["name"]: r for r in earlier if isinstance(r, dict) and isinstance(r.get("name"), str)}
        for r in results:
            before = records.get(r.name, {})
            if r.status == ELSEWHERE and before.get("status") in ("finished", "done"):
                continue
            records[r.name] = asdict(r)
        atomic_write_text(path, json.dumps(list(records.values()), indent=2) + "\n")
    return path
