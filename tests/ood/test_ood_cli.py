"""End to end on real data: a small CIFAR-10 model against Fashion-MNIST and CIFAR-10-C, through the CLI."""

import json

import pytest

from focalcal.cli.main import main
from focalcal.engine import TrainConfig, Trainer

DETECTION = ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr")


@pytest.fixture(scope="module")
def trained_run(cifar_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("ood") / "run"
    cfg = TrainConfig(
        dataset="cifar10",
        data_dir=str(cifar_root),
        model="resnet20",
        loss="ce",
        epochs=2,
        batch_size=64,
        train_size=300,
        val_size=200,
        test_size=200,
        device="cpu",
        dynamics_train_size=0,
        dynamics_test_size=0,
    )
    Trainer(cfg, run, progress=False).fit()
    return run


def test_ood_cli_writes_tables_figures_and_json(trained_run, cifar_root, capsys):
    run = trained_run
    rc = main(
        [
            "ood",
            str(run),
            "--ood",
            "fashion_mnist",
            "--ood",
            "cifar10c:gaussian_noise:5",
            "--max-images",
            "300",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    for name in ("ood.json", "ood.md", "ood_roc_entropy.png", "ood_roc_msp.png", "ood_roc_energy.png"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert (run / "ood_roc_entropy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (run / "report.json").exists()  # no evaluation yet: ood.json only

    rep = json.loads((run / "ood.json").read_text())
    assert rep["positive_class"] == "ood" and rep["logits_source"].startswith("computed")
    assert rep["in_distribution"]["n"] == 200 and rep["temperature"] > 0
    assert set(rep["sets"]) == {"fashion_mnist", "cifar10c:gaussian_noise:5"}
    fm, gn = rep["sets"]["fashion_mnist"], rep["sets"]["cifar10c:gaussian_noise:5"]
    assert fm["n"] == 300 and gn["n"] == 300 and fm["kind"] == "ood" and gn["kind"] == "shift"
    for entry in (fm, gn):
        for stage in ("before", "after"):
            for score in ("entropy", "msp", "energy"):
                m = entry["detection"][stage][score]
                assert set(m) == set(DETECTION) and all(0 <= m[k] <= 1 for k in DETECTION), (stage, score, m)
    assert "calibration" in gn and "calibration" not in fm  # labelled shift of the run's own classes
    assert 0 <= gn["calibration"]["after"]["ece"] <= 1
    md = (run / "ood.md").read_text()
    assert "| fashion_mnist | ood | 300 |" in md and "Calibration under dataset shift" in md
    assert "cifar10c:gaussian_noise:5, after TS" in md
    out = capsys.readouterr().out
    assert "AUROC" in out and "ood.md" in out


def test_ood_reuses_evaluate_logits_and_temperature(trained_run, capsys):
    run = trained_run
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0
    # 200 of the shifted images (the default scores all 10,000): what is checked here is the in-distribution side
    ood_args = ["--ood", "cifar10c:brightness:5", "--max-images", "200", "--scores", "entropy", "--device", "cpu"]
    assert main(["ood", str(run), *ood_args]) == 0
    report = json.loads((run / "report.json").read_text())
    ood = json.loads((run / "ood.json").read_text())
    assert ood["logits_source"] == "logits.pt"
    assert ood["temperature"] == pytest.approx(report["temperature"]["nll"]["value"], rel=1e-9)
    ece_after = ood["in_distribution"]["calibration"]["after"]["ece"]
    assert ece_after == pytest.approx(report["test"]["after"]["ece"])
    assert "ood" not in report  # one writer per file: OOD results live in ood.json only
    assert list(ood["sets"]) == ["cifar10c:brightness:5"] and ood["scores"] == ["entropy"]
    assert (run / "ood_roc_entropy.png").is_file()
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0  # a later evaluation keeps the OOD results
    assert json.loads((run / "ood.json").read_text()) == ood


def test_an_ood_set_that_is_the_test_split_is_refused(trained_run, cifar_root, capsys):
    # the run's own dataset named as OOD
    assert main(["ood", str(trained_run), "--ood", "cifar10", "--device", "cpu"]) == 2
    assert "the run's own dataset" in capsys.readouterr().err
    # a folder holding some of the run's test images
    import shutil

    folder = cifar_root.parent / "unused"  # never written: the copy goes to a temporary folder below
    del folder
    from focalcal.engine import prepare_data
    from focalcal.evaluation import load_run

    data = prepare_data(load_run(trained_run, device="cpu").config)
    tmp = trained_run.parent / "leak"
    tmp.mkdir(exist_ok=True)
    from PIL import Image

    for i in range(3):
        Image.fromarray(data.test_images[i].permute(1, 2, 0).numpy()).save(tmp / f"{i}.png")
    rc = main(["ood", str(trained_run), "--ood", f"folder:{tmp}", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "shares 3 of its 3 images with the run's cifar10 test split" in err
    shutil.rmtree(tmp)


def test_ood_cli_errors_are_one_line(trained_run, capsys):
    assert main(["ood", str(trained_run), "--ood", "mnist9", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("focalcal: error:") and "fashion_mnist" in err and "Traceback" not in err
    rc = main(["ood", str(trained_run), "--ood", "svhn", "--data-dir", "/nonexistent", "--device", "cpu"])
    assert rc == 2
    assert "test_32x32.mat" in capsys.readouterr().err
