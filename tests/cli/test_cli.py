"""End to end through the command line on a small real CIFAR-10 subset."""

import json

import pytest
import torch

from focalcal.cli.main import main


def test_train_then_evaluate_writes_every_file(cifar_subset_root, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(
        [
            "train",
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(cifar_subset_root / "cifar10"),
            "--model",
            "resnet20",
            "--loss",
            "flsd53",
            "--epochs",
            "2",
            "--train-size",
            "300",
            "--val-size",
            "200",
            "--batch-size",
            "64",
            "--dynamics-train-size",
            "50",
            "--out",
            str(run),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    for name in (
        "config.json",
        "log.jsonl",
        "checkpoints/last.pt",
        "final.pt",
        "report.json",
        "report.md",
        "reliability_before.png",
        "reliability_after.png",
        "logits.pt",
    ):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert len((run / "log.jsonl").read_text().splitlines()) == 2

    rc = main(["evaluate", str(run), "--n-bins", "10", "--ts-method", "ece_grid"])
    assert rc == 0
    report = json.loads((run / "report.json").read_text())
    assert report["n_bins"] == 10 and report["n_test"] == 200 and report["ts_method"] == "ece_grid"
    for split in ("before", "after"):
        m = report["test"][split]
        assert set(m) >= {"error", "nll", "ece", "adaptive_ece", "classwise_ece", "mce"}
        assert all(0 <= m[k] <= 1 for k in ("error", "ece", "adaptive_ece", "classwise_ece", "mce"))
    t = report["temperature"]["ece_grid"]["value"]
    assert 0.1 <= t <= 10.0 and abs(round(t * 10) - t * 10) < 1e-6  # the paper's 0.1 grid
    md = (run / "report.md").read_text()
    assert "ECE %" in md and "after TS" in md
    assert (run / "reliability_after.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr()
    assert "test error" in out.out + out.err


@pytest.mark.parametrize(
    "flag,value,expected",
    [("--model", "vgg99", "resnet20"), ("--loss", "hinge", "flsd53"), ("--dataset", "mnist9", "cifar100")],
)
def test_unknown_names_list_the_valid_ones(cifar_subset_root, tmp_path, capsys, flag, value, expected):
    rc = main(
        [
            "train",
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(cifar_subset_root / "cifar10"),
            flag,
            value,
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "x"),
            "--no-progress",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("focalcal: error:") and value in err and expected in err
    assert "Traceback" not in err


def test_missing_data_is_one_clear_line(tmp_path, capsys):
    rc = main(["train", "--data-dir", str(tmp_path / "empty"), "--epochs", "1", "--out", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "FOCALCAL_DATA" in err and "--data-dir" in err and "Traceback" not in err


def test_evaluate_without_a_run_says_how_to_make_one(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "focalcal train" in capsys.readouterr().err


def test_list_names_models_and_losses(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "resnet110_paper" in out and "densenet121" in out and "flsd53" in out
    assert "paper_cifar" in out and "72 experiments" in out and "FL-3" in out and "TS (NLL)" in out


def test_cli_resume_uses_the_runs_own_config(train_args, tmp_path, capsys):
    run = tmp_path / "r"
    args = [*train_args(run, dynamics_train_size="0", dynamics_test_size="0"), "--no-eval"]
    assert main(args) == 0
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["epoch"] = 1  # as if killed after epoch 1
    torch.save(state, run / "checkpoints" / "last.pt")
    # resume names only the folder; every protocol setting comes from the run's config.json
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--no-eval"]) == 0
    assert [json.loads(s)["epoch"] for s in (run / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_bad_preset_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [unclosed\n")
    assert main(["train", "--preset", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "Traceback" not in err
    bad.write_text("epochs: ten\n")
    assert main(["train", "--preset", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "epochs must be a number" in capsys.readouterr().err


def test_ambiguous_or_empty_values_are_refused_not_reinterpreted(train_args, tmp_path, capsys):
    with pytest.raises(SystemExit):  # argparse: one line on stderr, status 2
        main([*train_args(tmp_path / "a", val_size="1.0")])
    assert "1.0 is ambiguous" in capsys.readouterr().err
    run = tmp_path / "r"
    assert main([*train_args(run, epochs="1"), "--no-eval"]) == 0
    with pytest.raises(SystemExit):
        main(["evaluate", str(run), "--n-bins", "0"])  # 0 is not "the default": it is refused
    assert "must be >= 1" in capsys.readouterr().err


def test_plot_all_draws_what_it_can_and_names_what_it_skips(train_args, tmp_path, capsys):
    run = tmp_path / "r"  # trained without the per-epoch test pass
    assert main(train_args(run, epochs="2", dynamics_test_size="0")) == 0
    capsys.readouterr()
    assert main(["plot", "all", str(run), "--out", str(tmp_path / "p")]) == 0
    out, err = capsys.readouterr()
    drawn = {p.name for p in (tmp_path / "p").iterdir()}
    assert {"g.png", "weight_norm.png", "reliability.png"} <= drawn
    assert "test_nll.png" not in drawn and "nll_entropy.png" not in drawn
    assert "skipped test-nll:" in err and "skipped nll-entropy:" in err and "dynamics-test" in err


def test_evaluation_batch_comes_from_the_flag_then_the_run_then_the_device(train_args, tmp_path, monkeypatch):
    """Speed and memory only: the numbers are the same at any batch; an old run's stored 1024 is kept on resume
    and by evaluate/ood unless --eval-batch says otherwise."""
    import importlib

    ev = importlib.import_module("focalcal.data.modality")  # where evaluation's image batch sources are made
    seen = []
    real = ev.DeviceLoader

    def spy(*args, **kw):
        seen.append(kw["batch_size"])
        return real(*args, **kw)

    run = tmp_path / "r"
    assert main([*train_args(run, dynamics_train_size="0", dynamics_test_size="0"), "--no-eval"]) == 0
    sessions = json.loads((run / "provenance.json").read_text())["sessions"]
    assert sessions[-1]["eval_batch"] == 64  # null in config.json -> the CPU default, recorded
    monkeypatch.setattr(ev, "DeviceLoader", spy)
    assert main(["evaluate", str(run)]) == 0
    assert set(seen) == {64}
    first = json.loads((run / "report.json").read_text())["test"]["before"]
    seen.clear()
    assert main(["evaluate", str(run), "--eval-batch", "16"]) == 0
    assert set(seen) == {16}
    again = json.loads((run / "report.json").read_text())["test"]["before"]
    assert again["error"] == first["error"] and again["nll"] == pytest.approx(first["nll"], abs=1e-5)
    # a run that stored a batch (as every run made before the per-device default stored 1024) keeps it
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "eval_batch_size": 1024}))
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["epoch"] = 1  # as if killed after epoch 1
    torch.save(state, run / "checkpoints" / "last.pt")
    monkeypatch.setattr(ev, "DeviceLoader", real)
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--no-eval"]) == 0
    sessions = json.loads((run / "provenance.json").read_text())["sessions"]
    assert sessions[-1]["eval_batch"] == 1024
