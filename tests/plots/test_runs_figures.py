"""The analysis figures (Figs. 1-5) on small real runs: logged dynamics agree with a recomputation from each
epoch's checkpoint, and `focalcal plot` writes every figure and CSV from the logs."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from focalcal.cli.main import main
from focalcal.data import load_dataset, make_splits
from focalcal.engine import TrainConfig, Trainer
from focalcal.evaluation import evaluate, load_run, read_run, run_logits, write_evaluation
from focalcal.evaluation.runlog import DYNAMICS_COLUMNS
from focalcal.models import last_linear

N_DYN = 64
EPOCHS = 3
LOSSES = {"ce": ("ce", {}), "fl3": ("focal", {"gamma": 3.0})}


@pytest.fixture(scope="module")
def trained(cifar_subset_root, tmp_path_factory):
    """Two real runs (CE, focal gamma 3), resnet20, 3 epochs on 128 CIFAR-10 images, evaluated; each epoch's
    checkpoint kept as ``snapshots/epochN/checkpoints/last.pt`` so ``load_run`` restores that epoch."""
    root = tmp_path_factory.mktemp("runs")
    data = load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=None)
    splits = make_splits(data, val_size=64, train_size=128, test_size=100)
    runs = {}
    for name, (loss, opts) in LOSSES.items():
        run_dir = root / name
        cfg = TrainConfig(
            model="resnet20",
            loss=loss,
            loss_options=opts,
            epochs=EPOCHS,
            batch_size=32,
            device="cpu",
            dynamics_train_size=N_DYN,
            milestones=[2],
        )

        def snapshot(msg, run_dir=run_dir):
            if msg.startswith("epoch "):
                epoch = int(msg.split()[1].split("/")[0])
                dst = run_dir / "snapshots" / f"epoch{epoch}" / "checkpoints" / "last.pt"
                dst.parent.mkdir(parents=True)
                shutil.copy(run_dir / "checkpoints" / "last.pt", dst)

        Trainer(cfg, run_dir, data=splits, progress=False, echo=snapshot).fit()
        report, arrays = evaluate(load_run(run_dir, device="cpu"), splits)
        write_evaluation(run_dir, report, arrays)
        runs[name] = run_dir
    return runs, splits


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(s) for s in (run_dir / "log.jsonl").read_text().splitlines()]


def _direct(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float | None]:
    """NLL / entropy / accuracy, split by correctness, written out independently of engine.dynamics."""
    p = F.softmax(logits.double(), dim=1)
    nll = -torch.log(p[torch.arange(len(labels)), labels])
    ent = -(p * torch.log(p)).sum(1)
    ok = p.argmax(1) == labels
    out: dict[str, float | None] = {
        "accuracy": ok.double().mean().item(),
        "n_correct": int(ok.sum()),
        "n_incorrect": int((~ok).sum()),
    }
    for suffix, mask in (("", torch.ones_like(ok)), ("_correct", ok), ("_incorrect", ~ok)):
        out["nll" + suffix] = nll[mask].mean().item() if mask.any() else None
        out["entropy" + suffix] = ent[mask].mean().item() if mask.any() else None
    return out


def _assert_close(logged: dict, prefix: str, direct: dict, where: str) -> None:
    for key, value in direct.items():
        got = logged[f"{prefix}_{key}"]
        if value is None:
            assert got is None, f"{where}: {prefix}_{key}"
        else:
            assert got == pytest.approx(value, abs=1e-4, rel=1e-4), f"{where}: {prefix}_{key}"


@pytest.mark.parametrize("name", list(LOSSES))
def test_logged_dynamics_match_each_epochs_checkpoint(trained, name):
    runs, splits = trained
    log = _log(runs[name])
    assert [r["epoch"] for r in log] == list(range(1, EPOCHS + 1))
    for rec in log:
        run = load_run(runs[name] / "snapshots" / f"epoch{rec['epoch']}", device="cpu")
        assert run.epoch == rec["epoch"]
        where = f"{name} epoch {rec['epoch']}"
        test = run_logits(run, splits.test_images, splits.test_labels)
        _assert_close(rec, "test", _direct(test, splits.test_labels), where)
        train = run_logits(run, splits.train_images[:N_DYN], splits.train_labels[:N_DYN])
        _assert_close(rec, "train_eval", _direct(train, splits.train_labels[:N_DYN]), where)
        norm = float(last_linear(run.model).weight.detach().norm())
        assert rec["fc_weight_norm"] == pytest.approx(norm, rel=1e-6), where
    # final.pt is the last epoch's model
    final = load_run(runs[name], device="cpu")
    assert final.epoch == EPOCHS
    direct = _direct(run_logits(final, splits.test_images, splits.test_labels), splits.test_labels)
    _assert_close(log[-1], "test", direct, f"{name} final.pt")


def test_runlog_reads_the_log_and_labels_the_loss(trained):
    runs, _ = trained
    ce, fl = read_run(runs["ce"]), read_run(runs["fl3"])
    assert (ce.label, fl.label) == ("CE", "FL-3")
    assert ce.epochs.tolist() == [1, 2, 3] and ce.lr_drops() == [2]
    log = _log(runs["fl3"])
    assert fl.column("test_nll").tolist() == [r["test_nll"] for r in log]
    assert fl.column("gamma").tolist() == [3.0] * EPOCHS


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _nonempty(path: Path, magic: bytes = b"") -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    assert path.read_bytes().startswith(magic), path


def _cell_equals(cell: str, value) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return cell == ""
    return float(cell) == float(value)


def test_plot_all_writes_every_figure_and_csv_with_the_logs_values(trained, tmp_path, capsys):
    runs, _ = trained
    out = tmp_path / "figs"
    rc = main(["plot", "all", str(runs["ce"]), str(runs["fl3"]), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    for stem in ("nll_entropy", "test_nll", "g", "weight_norm", "reliability", "sheet"):
        _nonempty(out / f"{stem}.png", b"\x89PNG\r\n\x1a\n")
        _nonempty(out / f"{stem}.pdf", b"%PDF")
        if stem != "sheet":
            _nonempty(out / f"{stem}.csv")
    printed = capsys.readouterr().out.split()
    assert str(out / "sheet.png") in printed

    # one row per epoch per run, the log's own numbers
    logs = {str(runs[n]): _log(runs[n]) for n in LOSSES}
    for stem, keys in (
        ("nll_entropy", DYNAMICS_COLUMNS),
        ("test_nll", ("test_nll", "val_nll")),
        ("weight_norm", ("fc_weight_norm", "train_acc")),
    ):
        rows = _read_csv(out / f"{stem}.csv")
        assert len(rows) == 2 * EPOCHS
        assert {r["label"] for r in rows} == {"CE", "FL-3"}
        for row in rows:
            rec = logs[row["run"]][int(row["epoch"]) - 1]
            assert int(row["epoch"]) == rec["epoch"] and _cell_equals(row["lr"], rec["lr"])
            for k in keys:
                assert _cell_equals(row[k], rec.get(k)), (stem, k, row[k], rec.get(k))

    rel = _read_csv(out / "reliability.csv")
    report = json.loads((runs["fl3"] / "report.json").read_text())
    after = [r for r in rel if r["run"] == str(runs["fl3"]) and r["stage"] == "after"]
    assert len(after) == report["n_bins"]
    assert float(after[0]["temperature"]) == report["temperature"][report["ts_method"]]["value"]
    assert sum(int(r["count"]) for r in after) == report["n_test"]


def test_plot_subcommands_each_write_their_figure(trained, tmp_path):
    runs, _ = trained
    a, b = str(runs["ce"]), str(runs["fl3"])
    cases = {
        "nll-entropy": ([a, "--log-nll"], "nll_entropy"),
        "test-nll": ([a, b, "--label", "cross-entropy", "--label", "FL-3"], "test_nll"),
        "weight-norm": ([a, b], "weight_norm"),
        "reliability": ([b, "--n-bins", "10"], "reliability"),
        "g": (["--gammas", "0,1,3"], "g"),
    }
    for cmd, (extra, stem) in cases.items():
        assert main(["plot", cmd, *extra, "--out", str(tmp_path)]) == 0, cmd
        for ext in ("png", "pdf", "csv"):
            _nonempty(tmp_path / f"{stem}.{ext}")
    assert {r["label"] for r in _read_csv(tmp_path / "test_nll.csv")} == {"cross-entropy", "FL-3"}
    assert len(_read_csv(tmp_path / "reliability.csv")) == 2 * 10


def test_plot_errors_are_one_line_and_say_what_to_do(trained, tmp_path, capsys):
    runs, _ = trained
    assert main(["plot", "test-nll", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "focalcal train" in capsys.readouterr().err

    unevaluated = tmp_path / "uneval"
    shutil.copytree(runs["ce"], unevaluated, ignore=shutil.ignore_patterns("logits.pt", "snapshots"))
    assert main(["plot", "reliability", str(unevaluated), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "focalcal evaluate" in err and "Traceback" not in err
    # `all` still draws the rest and says why the reliability diagrams are missing
    assert main(["plot", "all", str(unevaluated), "--out", str(tmp_path / "all")]) == 0
    assert "focalcal evaluate" in capsys.readouterr().err
    assert (tmp_path / "all" / "sheet.png").is_file() and not (tmp_path / "all" / "reliability.png").exists()

    no_test = tmp_path / "no_test"
    shutil.copytree(runs["ce"], no_test, ignore=shutil.ignore_patterns("snapshots"))
    lines = [{k: v for k, v in r.items() if not k.startswith("test_")} for r in _log(no_test)]
    (no_test / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert main(["plot", "nll-entropy", str(no_test), "--out", str(tmp_path)]) == 2
    assert "--dynamics-test" in capsys.readouterr().err
    assert main(["plot", "weight-norm", str(no_test), "--out", str(tmp_path)]) == 0


def test_a_run_with_dynamics_every_2_plots_every_figure(train_args, tmp_path):
    """The paper preset logs the dynamics passes every 2nd epoch (and the last): the figures use those epochs."""
    run = tmp_path / "run"
    assert main(train_args(run, epochs="3", dynamics_every="2")) == 0
    logged = [r["epoch"] for r in _log(run) if r.get("test_nll") is not None]
    assert logged == [2, 3]
    assert main(["plot", "all", str(run), "--out", str(tmp_path / "fig")]) == 0
    for stem in ("nll_entropy", "test_nll", "weight_norm", "sheet"):
        _nonempty(tmp_path / "fig" / f"{stem}.png", b"\x89PNG")
    rows = [r for r in _read_csv(tmp_path / "fig" / "test_nll.csv") if r["test_nll"]]
    assert [int(r["epoch"]) for r in rows] == [2, 3]
