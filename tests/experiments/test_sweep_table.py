"""Sweeps (skip, resume, survive SIGKILL, submitit), DDP evaluation, tables and preset smoke steps."""

import csv
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from focalcal.cli.main import main
from focalcal.experiments import table as T
from focalcal.experiments.presets import experiment

TINY = [
    "--set",
    "train_size=256",
    "--set",
    "val_size=64",
    "--set",
    "test_size=100",
    "--set",
    "epochs=3",
    "--set",
    "dynamics_train_size=32",
    "--set",
    "dynamics_test_size=32",
    "--set",
    "amp=false",
    "--set",
    "channels_last=false",
]


def _sweep_cmd(out, cifar_root, *extra):
    return [
        sys.executable,
        "-m",
        "focalcal.cli.main",
        "sweep",
        "cpu",
        "--only",
        "loss=ce,fl3",
        "--seeds",
        "1",
        "--out",
        str(out),
        "--no-ood",
        "--data-dir",
        str(cifar_root),
        "--device",
        "cpu",
        *TINY,
        *extra,
    ]


def _table_csv(out, root):
    assert main(["table", str(root), "--out", str(out), "--no-figures"]) == 0
    return list(csv.DictReader(open(out / "table.csv")))


@pytest.fixture(scope="session")  # session: built once per worker (the file runs on one worker: --dist loadfile)
def reference_sweep(cifar_root, tmp_path_factory):
    """The uninterrupted sweep of CE and FL-3 (TINY), run once for both tests below: through submitit's local
    launcher where submitit is installed (one of them checks that launcher, the other compares a killed and
    resumed sweep's table with this one's), else through the default one."""
    out = tmp_path_factory.mktemp("reference_sweep")
    extra = ["--launcher", "submitit-local"] if importlib.util.find_spec("submitit") else []
    proc = subprocess.run(_sweep_cmd(out, cifar_root, *extra), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_a_killed_sweep_resumes_to_the_same_table(reference_sweep, cifar_root, tmp_path):
    ref = reference_sweep
    run = tmp_path / "run"
    proc = subprocess.Popen(_sweep_cmd(run, cifar_root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = run / "cifar10" / "resnet20" / "fl3" / "seed1"
    deadline = time.time() + 600
    while time.time() < deadline:  # wait until the first run is done and the second has finished 2 of 3 epochs
        log = second / "log.jsonl"
        if log.is_file() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the sweep itself; its child dies with it (PR_SET_PDEATHSIG)
    proc.wait()
    first_report = run / "cifar10" / "resnet20" / "ce" / "seed1" / "report.json"
    assert first_report.is_file() and not (second / "final.pt").exists()
    stamp = first_report.stat().st_mtime_ns
    time.sleep(1.0)  # the killed child must be gone before the rerun (its lock is released by the OS)
    again = subprocess.run(_sweep_cmd(run, cifar_root), capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    status = {r["name"]: r["status"] for r in json.loads((run / "sweep.json").read_text())}
    assert status == {"cpu/cifar10/resnet20/ce/seed1": "done", "cpu/cifar10/resnet20/fl3/seed1": "finished"}
    assert first_report.stat().st_mtime_ns == stamp  # the finished run was skipped, not redone
    sessions = json.loads((second / "provenance.json").read_text())["sessions"]
    assert [s["resumed_after_epoch"] for s in sessions][0] == 0 and sessions[-1]["resumed_after_epoch"] >= 1
    a, b = _table_csv(tmp_path / "ta", ref), _table_csv(tmp_path / "tb", run)
    assert [(r["loss"], r["metric"], r["stage"], r["value"]) for r in a] == [
        (r["loss"], r["metric"], r["stage"], r["value"]) for r in b
    ]


def test_dry_run_lists_what_each_job_needs(cifar_root, tmp_path, capsys):
    assert main(["sweep", "cpu", "--only", "loss=ce", "--seeds", "1-2", "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("new") == 2 and "train --preset" in out and "ood" in out


def test_the_submitit_local_launcher_runs_the_same_jobs(reference_sweep):
    pytest.importorskip("submitit")
    for loss in ("ce", "fl3"):
        assert (reference_sweep / "cifar10" / "resnet20" / loss / "seed1" / "report.json").is_file()
    assert len(list((reference_sweep / "submitit").rglob("*_result.pkl"))) == 2  # submitit ran them as jobs


def test_ddp_evaluation_sees_every_test_sample_once(cifar_subset_root, train_args, tmp_path):
    """2 gloo processes, 101 test images in batches of 16: uneven shards and an uneven last batch."""
    run = tmp_path / "r"
    assert main([*train_args(run, test_size="101", epochs="1"), "--set", "eval_batch_size=16", "--no-eval"]) == 0
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0
    single = json.loads((run / "report.json").read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "focalcal.cli.main",
        "evaluate",
        str(run),
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp = json.loads((run / "report.json").read_text())
    assert ddp["n_test"] == single["n_test"] == 101
    for stage in ("before", "after"):
        for k, v in single["test"][stage].items():
            assert ddp["test"][stage][k] == pytest.approx(v, abs=1e-6), (stage, k)
    saved = torch.load(run / "logits.pt", weights_only=True)
    assert saved["test_logits"].shape == (101, 10) and saved["val_logits"].shape == (64, 10)


# -- tables -------------------------------------------------------------------------------------------
def _fake_run(root: Path, loss: str, seed: int, ece: float, error: float, temperature: float = 1.5) -> Path:
    """A run folder with a config and report (the table reads only these), as a run would write them."""
    run = root / loss / f"seed{seed}"
    run.mkdir(parents=True)
    cfg = experiment(f"cpu/cifar10/resnet20/{loss}").train_config(seed=seed).to_dict()
    (run / "config.json").write_text(json.dumps(cfg))
    metrics = {
        "error": error,
        "nll": 1.0 + ece,
        "ece": ece,
        "adaptive_ece": ece * 1.1,
        "classwise_ece": ece / 3,
        "mce": ece * 2,
        "brier": 0.5,
    }
    after = {k: v / 2 for k, v in metrics.items()}
    after["error"] = error
    report = {
        "dataset": "cifar10",
        "model": "resnet20",
        "loss": cfg["loss"],
        "loss_options": cfg["loss_options"],
        "seed": seed,
        "n_bins": 15,
        "bin_closed": "left",
        "ts_method": "nll",
        "temperature": {"nll": {"value": temperature}},
        "test": {"before": metrics, "after": after},
    }
    (run / "report.json").write_text(json.dumps(report))
    return run


def test_the_table_reproduces_each_runs_report_and_intervals_by_hand(tmp_path):
    eces = [0.20, 0.25, 0.27]
    for s, e in zip((1, 2, 3), eces):
        _fake_run(tmp_path, "ce", s, e, 0.5 + s / 100)
    _fake_run(tmp_path, "fl3", 1, 0.07, 0.52)
    tables = T.build([str(tmp_path)], bootstrap=False)
    rows = {r["loss"]: r for r in tables.main}
    ce = rows["CE"]["ece_before"]
    half = stats.t.ppf(0.975, 2) * np.std(eces, ddof=1) / math.sqrt(3)
    assert (ce.value, ce.low, ce.high, ce.n, ce.how) == pytest.approx(
        (np.mean(eces), np.mean(eces) - half, np.mean(eces) + half, 3, "t")
    )
    fl = rows["FL-3"]
    assert fl["n"] == 1 and fl["ece_before"].value == 0.07 and fl["ece_after"].value == 0.035  # exactly the report's
    assert fl["temperature"].value == 1.5
    md = T.markdown(tables)
    assert "| cifar10 | ResNet-20 (thin) | FL-3 | 1 | 52.00 | 7.00 | 3.50 |" in md
    assert " 24.00 [" in md  # CE's mean ECE with its interval


def test_a_one_run_cell_gets_a_bootstrap_interval_from_its_logits(train_args, tmp_path):
    run = tmp_path / "cpu" / "ce" / "seed1"
    assert main(train_args(run, epochs="1")) == 0
    tables = T.build([str(tmp_path)])
    cell = tables.main[0]["ece_before"]
    report = json.loads((run / "report.json").read_text())
    assert cell.value == report["test"]["before"]["ece"] and cell.how == "bootstrap" and cell.n == 1
    assert cell.low < cell.high


# -- presets: every paper network takes a real step on real CIFAR-10 ----------------------------------
@pytest.mark.parametrize("model", ["densenet121", "resnet110_paper", "wrn26_10", "resnet50"])
def test_paper_presets_take_a_real_step(cifar_root, tmp_path, model, quick_precision):
    """(The evaluation layout's measurement, a forward pass of the network on 64 images in each layout, was
    most of this test's time: ``quick_precision`` runs it once per layout after its warm-up, not five times.)"""
    from focalcal.engine import Trainer

    cfg = experiment(f"paper_cifar/cifar10/{model}/flsd53").train_config(
        data_dir=str(cifar_root),
        device="cpu",
        train_size=8,
        val_size=8,
        test_size=8,
        batch_size=4,
        epochs=1,
        milestones=None,
        dynamics_train_size=0,
        dynamics_test_size=0,
        amp=False,
        channels_last=False,
    )
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    rec = json.loads((tmp_path / "run" / "log.jsonl").read_text())
    assert math.isfinite(rec["train_loss"]) and rec["train_loss"] > 0
    moved = [
        k for k, v in trainer.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert moved, "no parameter changed: no real step was taken"


def test_experiments_that_share_a_label_stay_apart_named_by_what_differs(tmp_path):
    _fake_run(tmp_path / "a", "ce", 1, 0.2, 0.5)
    run = _fake_run(tmp_path / "b", "ce", 1, 0.3, 0.5)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "epochs": 10}))
    tables = T.build([str(tmp_path)], bootstrap=False)
    labels = sorted(k[2] for k in tables.groups)
    assert labels == ["CE [epochs=10]", "CE [epochs=32]"]


def test_unfinished_evaluated_runs_are_left_out_of_the_table(tmp_path):
    _fake_run(tmp_path, "ce", 1, 0.2, 0.5)
    run = _fake_run(tmp_path, "ce", 2, 0.9, 0.5)
    rep = json.loads((run / "report.json").read_text())
    (run / "report.json").write_text(json.dumps({**rep, "epochs_trained": 20, "epochs": 32}))
    tables = T.build([str(tmp_path)], bootstrap=False)
    assert tables.main[0]["n"] == 1 and any("after 20 of 32 epochs" in s for s in tables.skipped)


def test_claims_refuse_runs_of_several_settings_and_export_one_file_per_run(tmp_path):
    from focalcal.errors import InputError
    from focalcal.experiments import claims as C

    _fake_run(tmp_path, "ce", 1, 0.2, 0.5)
    other = _fake_run(tmp_path / "x", "fl3", 1, 0.1, 0.5)
    rep = json.loads((other / "report.json").read_text())
    (other / "report.json").write_text(json.dumps({**rep, "model": "resnet32"}))
    with pytest.raises(InputError, match="these runs span cifar10/resnet20, cifar10/resnet32"):
        C.evaluate_claims(T.build([str(tmp_path)], bootstrap=False))


def test_sweep_state_reads_only_and_notices_other_overrides(tmp_path, capsys):
    from focalcal.experiments.sweep import plan, state

    (job,) = plan("cpu", [1], tmp_path, only={"loss": ["ce"]}, overrides={"epochs": "3"})
    assert state(job) == "new" and not (tmp_path / "cifar10").exists()  # nothing written by looking
    run = Path(job.run_dir)
    run.mkdir(parents=True)
    cfg = experiment("cpu/cifar10/resnet20/ce").train_config(seed=1).to_dict()  # 32 epochs, not 3
    (run / "config.json").write_text(json.dumps(cfg))
    assert state(job) == "mismatch"
    (run / "config.json").write_text(json.dumps({**cfg, "epochs": 3}))
    assert state(job) == "new"
    assert main(["sweep", "cpu", "--only", "losses=ce", "--out", str(tmp_path), "--dry-run"]) == 2
    assert "--only can select by dataset, model, loss; got losses" in capsys.readouterr().err
