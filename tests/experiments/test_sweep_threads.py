"""A local sweep shares the CPU cores out among its jobs but never gives a job more torch threads than the
OMP_NUM_THREADS the user started it with."""

import pytest

from focalcal.experiments import sweep


@pytest.mark.parametrize(
    ("cpus", "given", "parallel", "expected"),
    [
        (2, None, 1, 2),  # nothing set: every core to the one job
        (2, None, 2, 1),
        (8, None, 3, 2),
        (2, "1", 1, 1),  # the user's 1 thread is kept (it used to become 2)
        (16, "4", 2, 4),
        (16, "12", 2, 8),  # more than the job's share: the share
        (2, "abc", 1, 2),  # not a thread count: ignored
        (2, "0", 1, 2),
    ],
)
def test_threads_per_job(monkeypatch, cpus, given, parallel, expected):
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: cpus)
    if given is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", given)
    assert sweep.cpu_threads_per_job(parallel) == expected


def test_run_local_passes_the_users_thread_count_to_each_job(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(
        sweep,
        "run_job",
        lambda job, env=None, log=None: seen.append(env) or sweep.JobResult(job.name, job.run_dir, "done", 0.0, ""),
    )
    jobs = [sweep.Job("cpu/cifar10/resnet20/ce", seed, str(tmp_path / f"seed{seed}")) for seed in (1, 2)]
    sweep.run_local(jobs, tmp_path, parallel=1)
    assert [e["OMP_NUM_THREADS"] for e in seen] == ["1", "1"]
