"""Nothing lost, nothing silently wrong: one writer per run folder, damaged files, full disks, kill-anywhere."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from focalcal.cli.main import main
from focalcal.engine import RunFolder, TrainConfig, Trainer
from focalcal.errors import CheckpointError, DiskFullError, RunFolderError, RunLockedError, TrainingDiverged
from focalcal.evaluation import load_run


def _config(**kw):
    base = dict(
        model="resnet20",
        loss="ce",
        epochs=3,
        batch_size=64,
        device="cpu",
        dynamics_train_size=32,
        dynamics_test_size=32,
        milestones=[1, 2],
        amp=False,
        channels_last=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def _hold_lock_in_child(folder):
    code = f"""
import time
from focalcal.engine import RunFolder
with RunFolder({str(folder)!r}).lock():
    print("locked", flush=True)
    time.sleep(120)
"""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_process_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    child = _hold_lock_in_child(tmp_path / "run")
    try:
        with pytest.raises(RunLockedError, match=f"in use by another focalcal process \\(PID {child.pid}\\)"):
            with RunFolder(tmp_path / "run").lock():
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with RunFolder(tmp_path / "run").lock():  # the OS released the dead holder's lock: no stale lock
        assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())


def test_train_and_evaluate_on_a_folder_in_use_fail_with_one_line(tmp_path, capsys):
    child = _hold_lock_in_child(tmp_path / "run")
    try:
        for argv in (
            ["train", "--out", str(tmp_path / "run"), "--epochs", "1"],
            ["train", "--out", str(tmp_path / "run"), "--resume"],
            ["evaluate", str(tmp_path / "run")],
            ["ood", str(tmp_path / "run"), "--ood", "fashion_mnist"],
        ):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.startswith("focalcal: error:") and f"PID {child.pid}" in err and "Traceback" not in err
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def _damage(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_damaged_final_pt_falls_back_to_last_pt_and_both_damaged_is_named(tiny, tmp_path):
    run = tmp_path / "r"
    Trainer(_config(), run, data=tiny, progress=False).fit()
    _damage(run / "final.pt")
    loaded = load_run(run, device="cpu")
    assert loaded.checkpoint.name == "last.pt" and loaded.epoch == 3
    assert "final.pt is damaged" in loaded.note
    _damage(run / "checkpoints" / "last.pt")
    with pytest.raises(RunFolderError, match="final.pt is damaged.*last.pt is damaged.*no usable checkpoint"):
        load_run(run, device="cpu")


def test_resume_from_a_damaged_last_pt_says_it_cannot(tiny, tmp_path):
    run = tmp_path / "r"
    Trainer(_config(epochs=1, milestones=None), run, data=tiny, progress=False).fit()
    (run / "final.pt").unlink()
    _damage(run / "checkpoints" / "last.pt")
    with pytest.raises(
        CheckpointError, match="last.pt is damaged .*cannot be resumed from it; start again with --overwrite"
    ):
        Trainer(_config(epochs=1, milestones=None), run, data=tiny, progress=False).fit(resume=True)


def test_a_corrupt_config_json_on_resume_is_named(tiny, tmp_path, capsys):
    run = tmp_path / "r"
    Trainer(_config(epochs=1, milestones=None), run, data=tiny, progress=False).fit()
    (run / "config.json").write_text('{"model": "resnet20", ')
    assert main(["train", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "config.json is damaged (not valid JSON" in err and "cannot resume without the run's configuration" in err


def test_temp_files_of_interrupted_writes_are_removed_on_the_next_start(tiny, tmp_path):
    run = tmp_path / "r"
    Trainer(_config(epochs=1, milestones=None), run, data=tiny, progress=False).fit()
    leftovers = [run / "checkpoints" / ".last.pt.abc123.tmp", run / ".report.json.x9.tmp"]
    for p in leftovers:
        p.write_bytes(b"partial")
    Trainer(_config(epochs=2, milestones=[1]), run, data=tiny, progress=False).fit(overwrite=True)
    assert not any(p.exists() for p in leftovers)


def test_divergence_names_a_checkpoint_only_when_there_is_one(tiny, tmp_path, monkeypatch):
    cfg = _config(epochs=1, milestones=None, lr=1e6, grad_clip=None, dynamics_train_size=0)
    with pytest.raises(TrainingDiverged, match="no checkpoint was written before it"):
        Trainer(cfg, tmp_path / "d", data=tiny, progress=False).fit()
    # diverging in epoch 2 of a run whose epoch 1 was saved: the message names that checkpoint
    import focalcal.engine.trainer as tr

    real = tr.Trainer._train_epoch

    def diverge_in_second(self, epoch):
        out = real(self, epoch)
        if epoch == 1:  # the weights blow up during epoch 2: its validation logits are NaN
            with torch.no_grad():
                self.model.fc.weight.fill_(float("nan"))
        return out

    monkeypatch.setattr(tr.Trainer, "_train_epoch", diverge_in_second)
    with pytest.raises(TrainingDiverged, match=r"last good checkpoint is .*last.pt \(epoch 1\)"):
        Trainer(_config(epochs=2, milestones=[1]), tmp_path / "e", data=tiny, progress=False).fit()


def test_a_full_disk_is_one_line_and_the_last_checkpoint_stays_valid(tiny, tmp_path, monkeypatch):
    import focalcal.atomic as io_mod

    run = tmp_path / "r"
    cfg = _config(epochs=3)
    Trainer(cfg, tmp_path / "ref", data=tiny, progress=False).fit()
    real_fdopen = io_mod.os.fdopen
    writes = {"n": 0}

    def full_after_first_epoch(fd, mode="r", *a, **k):
        f = real_fdopen(fd, mode, *a, **k)
        if "last.pt" in os.readlink(f"/proc/self/fd/{fd}") and writes["n"] >= 1:
            f.close()
            return open("/dev/full", "wb")  # every write fails with ENOSPC, as on a full disk
        if "last.pt" in os.readlink(f"/proc/self/fd/{fd}"):
            writes["n"] += 1
        return f

    monkeypatch.setattr(io_mod.os, "fdopen", full_after_first_epoch)
    with pytest.raises(DiskFullError) as e:
        Trainer(cfg, run, data=tiny, progress=False).fit()
    msg = str(e.value)
    assert "no space left on the disk holding" in msg and "checkpoints/last.pt holds epoch 1" in msg
    assert f"focalcal train --resume --out {run}" in msg
    monkeypatch.setattr(io_mod.os, "fdopen", real_fdopen)
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1  # still valid
    assert not list((run / "checkpoints").glob(".*.tmp"))
    Trainer(cfg, run, data=tiny, progress=False).fit(resume=True)
    a = torch.load(tmp_path / "ref" / "final.pt", weights_only=True)["model"]
    b = torch.load(run / "final.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), "resuming after the full disk changed the result"


_KILLER = """
import os, signal, sys
import focalcal.atomic as io_mod
MODE, AT = sys.argv[1], int(sys.argv[2])
count = {{"n": 0}}
if MODE == "mid_write":  # SIGKILL after half of the checkpoint's bytes are written
    real_write = io_mod._RecordingFile.write
    def write(self, data):
        if ".last.pt." in os.readlink(f"/proc/self/fd/{{self._f.fileno()}}"):
            count["n"] += len(data)
            if count.get("armed") and count["n"] > 20000:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_write(self, data)
    io_mod._RecordingFile.write = write
real_replace = io_mod.os.replace
def replace(src, dst):
    if str(dst).endswith("last.pt"):
        count["saves"] = count.get("saves", 0) + 1
        if count["saves"] == AT - 1:
            count["armed"], count["n"] = True, 0
        if MODE == "before_rename" and count["saves"] == AT:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)
io_mod.os.replace = replace
from focalcal.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def _killer_args(train_args) -> list[str]:
    """``focalcal train`` flags of the SIGKILL tests, without ``train`` and ``--out``: 3 epochs on 256 images."""
    args = [*train_args("unused", epochs="3", train_size="256"), "--no-eval"][1:]
    return args[: args.index("--out")] + args[args.index("--out") + 2 :]  # each run below names its own --out


@pytest.fixture(scope="session")  # session: built once per worker (the file runs on one worker: --dist loadfile)
def uninterrupted_run(train_args, tmp_path_factory):
    """The uninterrupted run both SIGKILL tests compare with, trained once (in a process of its own, as theirs)."""
    ref = tmp_path_factory.mktemp("uninterrupted") / "ref"
    cmd = [sys.executable, "-m", "focalcal.cli.main", "train", *_killer_args(train_args), "--out", str(ref)]
    assert subprocess.run(cmd).returncode == 0
    return ref


@pytest.mark.parametrize("mode", ["mid_write", "before_rename"])
def test_sigkill_during_a_checkpoint_write_resumes_to_identical_weights(train_args, uninterrupted_run, tmp_path, mode):
    args = _killer_args(train_args)
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(_KILLER.format()))
    run = tmp_path / "run"
    killed = subprocess.run([sys.executable, str(script), mode, "2", "train", *args, "--out", str(run)])
    assert killed.returncode == -signal.SIGKILL  # it died in the middle of writing epoch 2's checkpoint
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1  # epoch 1's, intact
    t0 = time.time()
    again = subprocess.run([sys.executable, "-m", "focalcal.cli.main", "train", *args, "--out", str(run), "--resume"])
    assert again.returncode == 0, time.time() - t0
    a = torch.load(uninterrupted_run / "final.pt", weights_only=True)["model"]
    b = torch.load(run / "final.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [json.loads(s)["epoch"] for s in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert not list(run.rglob(".*.tmp"))


def test_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    import stat

    from focalcal.atomic import atomic_write_text

    atomic_write_text(tmp_path / "x.json", "{}")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o666 & ~mask
