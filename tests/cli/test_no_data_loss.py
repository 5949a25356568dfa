"""No command deletes what it did not write, and bad input is refused in one line before any work starts.

Each test sets up the situation a user met (a folder of runs, a folder that is not a run, a run evaluated on
other data, two sweeps on one folder) and checks every file that was there before, byte for byte, after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from focalcal.cli.main import main
from focalcal.experiments import table as T
from focalcal.experiments.claims import export_summaries
from focalcal.experiments.presets import experiment


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> content)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("focalcal: error:") and "Traceback" not in err, err
    return lines[0]


def _run_folder(root: Path, loss: str, seed: int, ece: float, *, checkpoint: bool = True) -> Path:
    """A run folder as training and evaluation leave it (config, log, report, a checkpoint's bytes)."""
    run = root / f"seed{seed}"
    run.mkdir(parents=True)
    cfg = experiment(f"cpu/cifar10/resnet20/{loss}").train_config(seed=seed).to_dict()
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "log.jsonl").write_text(json.dumps({"epoch": 1, "lr": 0.1, "fc_weight_norm": 1.0}) + "\n")
    metrics = {"error": 0.3, "nll": 1.0, "ece": ece, "adaptive_ece": ece, "classwise_ece": ece / 3}
    report = {
        "dataset": "cifar10",
        "model": "resnet20",
        "loss": cfg["loss"],
        "loss_options": cfg["loss_options"],
        "n_bins": 15,
        "ts_method": "nll",
        "temperature": {"nll": {"value": 1.5}},
        "test": {"before": metrics, "after": metrics},
    }
    (run / "report.json").write_text(json.dumps(report))
    if checkpoint:
        (run / "final.pt").write_bytes(b"the trained weights")
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.pt").write_bytes(b"the training state")
    return run


# -- 1. claims never deletes the runs it reads, nor anything its export did not write -------------------------
def test_claims_into_the_folder_holding_the_runs_deletes_nothing(tmp_path, monkeypatch, capsys):
    _run_folder(tmp_path / "runs" / "ce", "ce", 1, 0.2)
    _run_folder(tmp_path / "runs" / "ce2", "ce", 2, 0.3)
    before = _snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["claims", "runs/ce", "--out", "."]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "runs" in line and "nothing was changed" in line
    assert _snapshot(tmp_path) == before  # ce and ce2 intact, and nothing added


def test_claims_refuses_to_replace_page_files_it_did_not_write(tmp_path, capsys):
    _run_folder(tmp_path / "src" / "ce", "ce", 1, 0.2)
    page = tmp_path / "page"
    page.mkdir()
    (page / "table.csv").write_text("my own table\n")
    for extra in ([], ["--overwrite"]):
        assert main(["claims", str(tmp_path / "src"), "--out", str(page), *extra]) == 2
        assert "table.csv" in _one_line_error(capsys.readouterr().err)
        assert _snapshot(page) == {"table.csv": b"my own table\n"}


def test_an_export_replaces_an_earlier_export_only_with_overwrite_and_never_foreign_files(tmp_path):
    from focalcal.errors import InputError

    src = tmp_path / "src"
    for seed in (1, 2):
        _run_folder(src / "ce", "ce", seed, 0.2 + seed / 100)
    tables = T.build([str(src)], bootstrap=False)
    dest = tmp_path / "page" / "runs"
    first = export_summaries(tables, dest)
    assert sorted(p.name for p in first) == ["seed1", "seed2"]
    stale = dest / "cifar10" / "resnet20" / "CE" / "seed9"  # a run of an earlier export, gone from the source
    shutil.copytree(first[0], stale)
    with pytest.raises(InputError, match="holds an earlier export .*--overwrite"):
        export_summaries(tables, dest)
    (dest / "cifar10" / "notes.txt").write_text("mine")  # something the export does not write
    kept = _snapshot(dest)
    with pytest.raises(InputError, match=r"does not write \(.*notes.txt\)"):
        export_summaries(tables, dest, overwrite=True)
    assert _snapshot(dest) == kept
    (dest / "cifar10" / "notes.txt").unlink()
    export_summaries(tables, dest, overwrite=True)
    assert not stale.exists()  # the earlier export's own run, removed; the two runs exported again
    expected = {
        f"cifar10/resnet20/CE/seed{s}/{name}": (src / "ce" / f"seed{s}" / name).read_bytes()
        for s in (1, 2)
        for name in ("config.json", "report.json", "log.jsonl")
    }
    assert _snapshot(dest) == expected


# -- 2. train into a folder that is not a run --------------------------------------------------------------
def test_train_into_a_folder_that_is_not_a_run_loses_none_of_its_files(train_args, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.json").write_text('{"my": "own report"}')
    (folder / "notes.txt").write_text("notes")
    before = _snapshot(folder)
    for extra in ([], ["--overwrite"], ["--no-eval"]):
        assert main([*train_args(folder, epochs="1"), *extra]) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert "not a focalcal run" in line and "report.json" in line
        assert _snapshot(folder) == before


def test_train_into_a_folder_of_unrelated_files_keeps_them(train_args, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("notes")
    (folder / ".draft.tmp").write_text("a file of mine that ends in .tmp")
    assert main([*train_args(folder, epochs="1"), "--no-eval"]) == 0
    assert (folder / "notes.txt").read_text() == "notes"
    assert (folder / ".draft.tmp").read_text() == "a file of mine that ends in .tmp"
    assert (folder / "final.pt").is_file()


# -- 3. evaluate on other data -----------------------------------------------------------------------------
def _class_folder(dst: Path, src_root: Path, classes: list[str], *, train: slice, test: slice) -> Path:
    for split, take in (("train", train), ("test", test)):
        for c in classes:
            (dst / split / c).mkdir(parents=True)
            for f in sorted((src_root / split / c).iterdir())[take]:
                shutil.copy(f, dst / split / c / f.name)
    return dst


@pytest.fixture(scope="module")
def three_class_run(cifar_root, tmp_path_factory):
    """A run trained (1 epoch) on CIFAR-10's cat/dog/frog, with its report; the data folders around it."""
    root = tmp_path_factory.mktemp("evaluate_other_data")
    with pytest.MonkeyPatch.context() as mp:  # decoded-image caches stay out of ~/.cache
        mp.setenv("FOCALCAL_CACHE", str(root / "cache"))
        yield _train_three_classes(root, cifar_root / "cifar10")


def _train_three_classes(root: Path, cifar: Path):
    own = _class_folder(root / "own", cifar, ["cat", "dog", "frog"], train=slice(0, 40), test=slice(0, 12))
    run = root / "run"
    args = ["train", "--dataset", "imagefolder", "--data-dir", str(own), "--out", str(run), "--device", "cpu"]
    args += ["--epochs", "1", "--train-size", "80", "--val-size", "30", "--batch-size", "40", "--no-progress"]
    args += ["--dynamics-train-size", "0", "--dynamics-test-size", "0", "--no-amp", "--no-channels-last"]
    assert main(args) == 0
    others = {
        "bird_cat_deer": _class_folder(
            root / "bcd", cifar, ["bird", "cat", "deer"], train=slice(0, 40), test=slice(0, 12)
        ),
        "ten": _class_folder(
            root / "ten",
            cifar,
            sorted(p.name for p in (cifar / "train").iterdir()),
            train=slice(0, 11),
            test=slice(0, 4),
        ),
        "same_classes_other_images": _class_folder(
            root / "other_images", cifar, ["cat", "dog", "frog"], train=slice(100, 140), test=slice(100, 112)
        ),
    }
    return run, own, others


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("bird_cat_deer", r"trained on classes \[cat, dog, frog\] but the data .* holds \[bird, cat, deer\]"),
        ("ten", r"\[cat, dog, frog\] but the data .* holds \[airplane, automobile, .*truck\]: the classes differ"),
        ("same_classes_other_images", r"has the run's classes but not its training images"),
    ],
)
def test_evaluate_on_other_data_is_refused_and_the_report_kept(
    three_class_run, which, expected, capsys, tmp_path, monkeypatch
):
    import re

    run, own, others = three_class_run
    monkeypatch.setenv("FOCALCAL_CACHE", str(run.parent / "cache"))  # the run's (a temporary folder): no re-measuring
    before = _snapshot(run)
    assert main(["evaluate", str(run), "--data-dir", str(others[which]), "--device", "cpu"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert re.search(expected, line), line
    assert _snapshot(run) == before  # report.json and everything else untouched
    # the run's own data at another path (what --data-dir is for) is evaluated, to the same numbers
    first = json.loads((run / "report.json").read_text())
    moved = shutil.copytree(own, tmp_path / "moved")
    assert main(["evaluate", str(run), "--data-dir", str(moved), "--device", "cpu"]) == 0
    again = json.loads((run / "report.json").read_text())
    assert again["n_test"] == first["n_test"] == 36
    for stage in ("before", "after"):
        assert again["test"][stage] == pytest.approx(first["test"][stage], rel=1e-5, abs=1e-7)


# -- 5. refusals before any work ---------------------------------------------------------------------------
def test_sweep_gpus_without_cuda_is_refused_before_any_job(tmp_path, monkeypatch, capsys):
    from focalcal.experiments import sweep as S

    started = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(
        S,
        "run_job",
        lambda job, env=None, log=None: started.append(job) or S.JobResult(job.name, job.run_dir, "finished"),
    )
    for extra in ([], ["--dry-run"]):
        assert main(["sweep", "cpu", "--only", "loss=ce", "--out", str(tmp_path / "s"), "--gpus", "0,1", *extra]) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert "--gpus 0,1" in line and "CUDA is not available" in line
    assert started == [] and not (tmp_path / "s").exists()


def test_resume_with_nothing_to_resume_says_so(train_args, tmp_path, capsys):
    for folder in (tmp_path / "absent", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        assert main([*train_args(folder, epochs="1"), "--resume"]) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert "nothing to resume" in line and "without --resume" in line
        assert not (folder / "config.json").exists() and not (folder / "final.pt").exists()
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr", "nan"], "lr must be a finite number > 0 (got nan)"),
        (["--lr", "inf"], "lr must be a finite number > 0 (got inf)"),
        (["--weight-decay", "-1"], "weight_decay must be a finite number >= 0 (got -1"),
        (["--weight-decay", "nan"], "weight_decay must be a finite number >= 0 (got nan)"),
        (["--grad-clip", "inf"], "grad_clip must be a finite number > 0, or 0 / null to disable it (got inf)"),
        (["--grad-clip", "-1"], "grad_clip must be a finite number > 0, or 0 / null to disable it (got -1"),
        (["--set", "momentum=-1"], "momentum must lie in [0, 1) (got -1)"),
        (["--set", "momentum=.nan"], "momentum must lie in [0, 1) (got nan)"),
    ],
)
def test_meaningless_rates_are_one_line_before_any_work(train_args, tmp_path, capsys, flags, message):
    run = tmp_path / "run"
    assert main([*train_args(run, epochs="1"), *flags]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "invalid training configuration" in line and message in line
    assert not run.exists()  # refused before the folder was made or any data loaded


def _outputs(path: Path, n: int, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    torch.save({"logits": torch.randn(n, 3, generator=g), "labels": torch.randint(0, 3, (n,), generator=g)}, path)
    return path


def test_calibrate_refuses_data_with_val_test_and_a_negative_n_boot(tmp_path, capsys):
    val, test = _outputs(tmp_path / "val.pt", 60, 0), _outputs(tmp_path / "test.pt", 60, 1)
    both = tmp_path / "both.pt"
    torch.save(
        {f"{s}_{k}": torch.load(p)[k] for s, p in (("val", val), ("test", test)) for k in ("logits", "labels")}, both
    )
    common = ["calibrate", "--kind", "logits", "--calibrators", "temperature", "--n-boot", "5"]
    cases = [
        (["--data", str(both), "--val", str(val), "--test", str(test)], "not both (got --data and --val, --test)"),
        (["--data", str(both), "--test", str(test)], "not both (got --data and --test)"),
        (["--val", str(val), "--test", str(test), "--n-boot", "-1"], "--n-boot must be >= 0"),
    ]
    for i, (flags, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert main([*common, *flags, "--out", str(out)]) == 2
        assert message in _one_line_error(capsys.readouterr().err)
        assert not out.exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [("epocs=3", "unknown config keys ['epocs']"), ("lr=-1", "lr must be a finite number > 0 (got -1)")],
)
def test_sweep_dry_run_checks_set_keys_as_a_sweep_does(tmp_path, capsys, setting, message):
    for extra in (["--dry-run"], []):
        argv = ["sweep", "cpu", "--only", "loss=ce", "--out", str(tmp_path), "--set", setting, *extra]
        assert main(argv) == 2
        assert message in _one_line_error(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


# -- 6. two sweeps on one folder ---------------------------------------------------------------------------
_DRIVER = """
import json, sys, time
from pathlib import Path
from focalcal.experiments import sweep as S

out, me, other, delay = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
out.mkdir(parents=True, exist_ok=True)
# a job's command: hold the run folder's lock (as `focalcal train` does) for 1.5 s, then leave a finished run
FAKE = out / "fake_train.py"
FAKE.write_text(
    "import fcntl, os, sys, time\\n"
    "os.makedirs(sys.argv[1], exist_ok=True)\\n"
    "f = open(os.path.join(sys.argv[1], '.lock'), 'a+')\\n"
    "fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\\n"
    "print('training', sys.argv[1], flush=True)\\n"
    "time.sleep(1.5)\\n"
    "for name in ('final.pt', 'report.json'):\\n"
    "    open(os.path.join(sys.argv[1], name), 'w').write('{}')\\n"
    "print('finished', sys.argv[1], flush=True)\\n"
)
S.commands = lambda job: (
    [] if (Path(job.run_dir) / "report.json").exists() else [[sys.executable, str(FAKE), job.run_dir]]
)
jobs = [S.Job(f"fake/{n}", 1, str(out / n / "seed1")) for n in ("x", "y")]
(out / me).write_text("ready")
while not (out / other).exists():  # start together, after both imported torch
    time.sleep(0.01)
time.sleep(delay)
results = S.run_local(jobs, out)
S.write_summary(out, results)
print(json.dumps({r.name: r.status for r in results}))
"""


def test_two_sweeps_on_one_folder_keep_correct_bookkeeping_and_separate_logs(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(_DRIVER))
    out = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(out), me, other, delay], stdout=subprocess.PIPE, text=True, env=env
        )
        for me, other, delay in (("a.ready", "b.ready", "0"), ("b.ready", "a.ready", "0.5"))
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    seen = [json.loads(o.strip().splitlines()[-1]) for o in outputs]
    # the second sweep found x held by the first; the first found y held by the second: neither failed
    assert seen[0] == {"fake/x/seed1": "finished", "fake/y/seed1": "running elsewhere"}, seen
    assert seen[1] == {"fake/x/seed1": "running elsewhere", "fake/y/seed1": "finished"}, seen
    summary = {r["name"]: r["status"] for r in json.loads((out / "sweep.json").read_text())}
    assert summary == {"fake/x/seed1": "finished", "fake/y/seed1": "finished"}
    for name in ("x", "y"):  # each job ran once, its log written by one process only
        log = (out / "logs" / f"fake_{name}_seed1.log").read_text().splitlines()
        assert [line.split()[0] for line in log] == ["$", "training", "finished"], log


def test_concurrent_summary_writes_keep_every_record(tmp_path):
    """Many processes recording results at once: read-modify-write under the lock loses none."""
    code = textwrap.dedent(
        """
        import sys
        from focalcal.experiments.sweep import JobResult, write_summary
        i = int(sys.argv[2])
        for k in range(30):
            write_summary(sys.argv[1], [JobResult(f"job{i}-{k}", "-", "finished")])
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(i)]) for i in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    names = [r["name"] for r in json.loads((tmp_path / "sweep.json").read_text())]
    assert sorted(names) == sorted(f"job{i}-{k}" for i in range(2) for k in range(30))


def test_an_export_names_a_loss_with_options_in_plain_ascii(tmp_path):
    """``MMCE (λ=4)`` becomes the folder ``MMCE_lam=4``: no symbol a shell or another file system mangles."""
    from focalcal.registry import ascii_label

    assert ascii_label("MMCE (λ=4)") == "MMCE (lam=4)" and ascii_label("FL (γ=2.5)") == "FL (gamma=2.5)"
    run = _run_folder(tmp_path / "src" / "mmce", "mmce_weighted", 1, 0.2)
    for name in ("config.json", "report.json"):
        d = json.loads((run / name).read_text())
        d["loss_options"] = {"lam": 4.0}
        (run / name).write_text(json.dumps(d))
    (exported,) = export_summaries(T.build([str(tmp_path / "src")], bootstrap=False), tmp_path / "page")
    assert exported == tmp_path / "page" / "cifar10" / "resnet20" / "MMCE_lam=4" / "seed1"
