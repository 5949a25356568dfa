"""`focalcal calibrate`: any model's saved outputs, in every format, with one-line errors naming the file."""

import json

import numpy as np
import pytest
import torch

from focalcal.calibration import TemperatureScaling
from focalcal.calibration import compare as compare_mod
from focalcal.calibration import outputs as outputs_mod
from focalcal.cli.main import main
from focalcal.metrics import calibration_summary

FAST = ["--calibrators", "temperature,temperature:ece_grid,vector", "--n-boot", "50"]


def _synthetic(n=600, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    z = 3.0 * torch.nn.functional.one_hot(y, k) + 1.5 * torch.randn(n, k, generator=g)
    return z.double(), y


@pytest.fixture(scope="module")
def trained_run(cifar_subset_root, tmp_path_factory):
    from focalcal.data import load_dataset, make_splits
    from focalcal.engine import TrainConfig, Trainer
    from focalcal.evaluation import evaluate_run, write_evaluation

    data = make_splits(
        load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=None), val_size=100, train_size=256
    )
    run = tmp_path_factory.mktemp("cal") / "run"
    cfg = TrainConfig(
        dataset="imagefolder",
        epochs=2,
        batch_size=64,
        device="cpu",
        amp=False,
        channels_last=False,
        dynamics_train_size=0,
        dynamics_test_size=0,
        milestones=[1],
        n_bins=10,
        bin_closed="right",
    )
    Trainer(cfg, run, data=data, progress=False).fit()
    write_evaluation(run, *evaluate_run(run, data=data, device="cpu"))
    return run


def test_calibrating_a_focalcal_runs_logits_reproduces_its_report(trained_run, tmp_path):
    out = tmp_path / "cal"
    rc = main(
        [
            "calibrate",
            "--data",
            str(trained_run / "logits.pt"),
            "--kind",
            "logits",
            "--out",
            str(out),
            "--n-bins",
            "10",
            "--bin-closed",
            "right",
            *FAST,
        ]
    )
    assert rc == 0
    rep = json.loads((out / "calibration.json").read_text())
    run_report = json.loads((trained_run / "report.json").read_text())
    for k in ("error", "nll", "ece", "adaptive_ece", "classwise_ece", "mce", "brier"):
        assert rep["uncalibrated"][k]["estimate"] == pytest.approx(
            run_report["test"]["before"][k], rel=1e-12, abs=1e-12
        )
    by = {(c["name"], c["options"].get("method")): c for c in rep["calibrators"]}
    for method in ("nll", "ece_grid"):
        for k in ("nll", "ece", "classwise_ece"):
            got = by[("temperature", method)]["test"][k]["estimate"]
            assert got == pytest.approx(run_report["test_after_by_method"][method][k], rel=1e-6, abs=1e-9), (method, k)
    for f in ("calibration.md", "calibrator.json", "reliability_before.png", "reliability_after.png"):
        assert (out / f).is_file(), f


def test_the_choice_is_by_cross_validated_nll_on_validation_only(tmp_path):
    z, y = _synthetic()
    torch.save(
        {"val_logits": z[:300], "val_labels": y[:300], "test_logits": z[300:], "test_labels": y[300:]},
        tmp_path / "o.pt",
    )
    assert (
        main(["calibrate", "--data", str(tmp_path / "o.pt"), "--kind", "logits", "--out", str(tmp_path / "c"), *FAST])
        == 0
    )
    rep = json.loads((tmp_path / "c" / "calibration.json").read_text())
    cv = [c["val_cv_nll"] for c in rep["calibrators"]]
    assert "cross-validation on the validation split" in rep["criterion"]
    # the one-standard-error rule: the fewest parameters among those within one SE (over folds) of the lowest
    best = int(np.argmin(cv))
    threshold = cv[best] + rep["calibrators"][best]["val_cv_nll_se"]
    within = [i for i, v in enumerate(cv) if v <= threshold]
    assert rep["chosen"] == min(within, key=lambda i: (rep["calibrators"][i]["n_parameters"], cv[i], i))
    # the CV NLL of temperature scaling recomputed by hand: fit on 4/5 of validation, score the held-out fifth
    order = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    total = 0.0
    for f in range(5):
        held = order[f::5]
        keep = torch.ones(300, dtype=torch.bool)
        keep[held] = False
        ts = TemperatureScaling().fit(z[:300][keep], y[:300][keep])
        total += float(torch.nn.functional.cross_entropy(ts.transform(z[:300][held]), y[:300][held], reduction="sum"))
    assert cv[0] == pytest.approx(total / 300, rel=1e-9)


@pytest.mark.parametrize("fmt", ["pt", "npz", "npy", "csv", "csv_split"])
@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_every_format_gives_the_same_report(tmp_path, fmt, kind):
    z, y = _synthetic()
    scores = z if kind == "logits" else torch.softmax(z, 1)
    val, test = (scores[:300].numpy(), y[:300].numpy()), (scores[300:].numpy(), y[300:].numpy())
    args = []
    if fmt == "pt":
        for name, (s, lab) in (("val", val), ("test", test)):
            torch.save({kind: torch.from_numpy(s), "labels": torch.from_numpy(lab)}, tmp_path / f"{name}.pt")
        args = ["--val", str(tmp_path / "val.pt"), "--test", str(tmp_path / "test.pt")]
    elif fmt == "npz":
        for name, (s, lab) in (("val", val), ("test", test)):
            np.savez(tmp_path / f"{name}.npz", scores=s, targets=lab)
        args = ["--val", str(tmp_path / "val.npz"), "--test", str(tmp_path / "test.npz")]
    elif fmt == "npy":
        for name, (s, lab) in (("val", val), ("test", test)):
            np.save(tmp_path / f"{name}.npy", s)
            np.save(tmp_path / f"{name}_y.npy", lab)
        args = [
            "--val",
            str(tmp_path / "val.npy"),
            "--val-labels",
            str(tmp_path / "val_y.npy"),
            "--test",
            str(tmp_path / "test.npy"),
            "--test-labels",
            str(tmp_path / "test_y.npy"),
        ]
    else:
        lines = ["c0,c1,c2,c3,label" + (",split" if fmt == "csv_split" else "")]
        for name, (s, lab) in (("val", val), ("test", test)):
            body = [
                ",".join(repr(float(v)) for v in row) + f",{int(t)}" + (f",{name}" if fmt == "csv_split" else "")
                for row, t in zip(s, lab)
            ]
            if fmt == "csv":
                (tmp_path / f"{name}.csv").write_text("\n".join([lines[0], *body]) + "\n")
            else:
                lines += body
        if fmt == "csv_split":
            (tmp_path / "all.csv").write_text("\n".join(lines) + "\n")
            args = ["--data", str(tmp_path / "all.csv")]
        else:
            args = ["--val", str(tmp_path / "val.csv"), "--test", str(tmp_path / "test.csv")]
    assert main(["calibrate", *args, "--kind", kind, "--out", str(tmp_path / "c"), *FAST]) == 0
    rep = json.loads((tmp_path / "c" / "calibration.json").read_text())
    ref = calibration_summary(logits=z[300:], labels=y[300:])
    assert rep["uncalibrated"]["ece"]["estimate"] == pytest.approx(ref["ece"], abs=1e-6)
    assert rep["uncalibrated"]["nll"]["estimate"] == pytest.approx(ref["nll"], rel=1e-6)


@pytest.mark.parametrize("columns", [1, 2])
def test_binary_outputs_one_or_two_columns(tmp_path, columns):
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (400,), generator=g)
    p = torch.sigmoid(2.5 * (2 * y - 1) + torch.randn(400, generator=g)).double()
    s = p[:, None] if columns == 1 else torch.stack([1 - p, p], 1)
    torch.save({"probs": s[:200], "labels": y[:200]}, tmp_path / "v.pt")
    torch.save({"probs": s[200:], "labels": y[200:]}, tmp_path / "t.pt")
    assert (
        main(
            [
                "calibrate",
                "--val",
                str(tmp_path / "v.pt"),
                "--test",
                str(tmp_path / "t.pt"),
                "--kind",
                "probs",
                "--out",
                str(tmp_path / "c"),
                *FAST,
            ]
        )
        == 0
    )
    rep = json.loads((tmp_path / "c" / "calibration.json").read_text())
    ref = calibration_summary(probs=torch.stack([1 - p[200:], p[200:]], 1), labels=y[200:])
    assert rep["num_classes"] == 2 and rep["uncalibrated"]["ece"]["estimate"] == pytest.approx(ref["ece"], abs=1e-9)


def test_apply_writes_the_saved_calibrators_probabilities(tmp_path):
    z, y = _synthetic()
    torch.save(
        {"val_logits": z[:300], "val_labels": y[:300], "test_logits": z[300:], "test_labels": y[300:]},
        tmp_path / "o.pt",
    )
    assert (
        main(
            [
                "calibrate",
                "--data",
                str(tmp_path / "o.pt"),
                "--kind",
                "logits",
                "--out",
                str(tmp_path / "c"),
                "--calibrators",
                "temperature",
                "--n-boot",
                "0",
            ]
        )
        == 0
    )
    new = torch.randn(50, 4, generator=torch.Generator().manual_seed(5)).double()
    np.save(tmp_path / "new.npy", new.numpy())
    assert (
        main(
            [
                "calibrate",
                "--apply",
                str(tmp_path / "c" / "calibrator.json"),
                "--input",
                str(tmp_path / "new.npy"),
                "--kind",
                "logits",
                "--out",
                str(tmp_path / "p.npy"),
            ]
        )
        == 0
    )
    t = TemperatureScaling().fit(z[:300], y[:300]).temperature
    expected = torch.softmax(new / t, 1).float().numpy()
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-5, atol=1e-7)


def _err(capsys):
    err = capsys.readouterr().err
    assert err.startswith("focalcal: error:") and "Traceback" not in err and err.count("\n") == 1
    return err


def test_bad_inputs_are_one_line_naming_the_file(tmp_path, capsys):
    z, y = _synthetic(n=100)
    good = tmp_path / "good.pt"
    torch.save({"logits": z, "labels": y}, good)
    cases = {
        "rows.pt": ({"logits": z, "labels": y[:90]}, "logits", "100 rows of scores but 90 labels"),
        "range.pt": ({"logits": z, "labels": torch.full((100,), 7)}, "logits", "100 labels outside [0, 4)"),
        "sums.pt": (
            {"probs": torch.softmax(z, 1) * 1.1, "labels": y},
            "probs",
            "100 rows of probabilities do not sum to 1",
        ),
        "nan.pt": (
            {"logits": torch.where(torch.arange(100)[:, None] < 3, float("nan"), z), "labels": y},
            "logits",
            "3 rows hold NaN",
        ),
    }
    for name, (obj, kind, msg) in cases.items():
        torch.save(obj, tmp_path / name)
        rc = main(
            [
                "calibrate",
                "--val",
                str(tmp_path / name),
                "--test",
                str(good),
                "--kind",
                kind,
                "--out",
                str(tmp_path / "o"),
            ]
        )
        err = _err(capsys)
        assert rc == 2 and name in err and msg in err, err
    (tmp_path / "nolabel.csv").write_text("a,b\n0.1,0.9\n")
    assert (
        main(
            [
                "calibrate",
                "--val",
                str(tmp_path / "nolabel.csv"),
                "--test",
                str(good),
                "--kind",
                "probs",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = _err(capsys)
    assert "nolabel.csv has no label column 'label'" in err and "--label-column" in err


def test_an_input_larger_than_memory_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    z, y = _synthetic(n=100)
    torch.save({"val_logits": z, "val_labels": y, "test_logits": z, "test_labels": y}, tmp_path / "o.pt")
    monkeypatch.setattr(outputs_mod, "available_memory", lambda: 1000)
    assert main(["calibrate", "--data", str(tmp_path / "o.pt"), "--kind", "logits", "--out", str(tmp_path / "c")]) == 2
    err = _err(capsys)
    assert "GiB of memory is available" in err and ".npy" in err


def test_a_large_test_split_is_streamed_with_the_same_metrics(tmp_path, monkeypatch):
    z, y = _synthetic(n=800)
    val, test = (
        outputs_mod.check_split(z[:300].numpy(), y[:300].numpy(), "logits", "v"),
        outputs_mod.check_split(z[300:].numpy(), y[300:].numpy(), "logits", "t"),
    )
    cands = [compare_mod.Candidate("temperature", {"method": "nll"})]
    full, _ = compare_mod.compare(val, test, candidates=cands, n_boot=0)
    monkeypatch.setattr(compare_mod, "MAX_BOOTSTRAP_VALUES", 10)  # force the chunked path
    streamed, arrays = compare_mod.compare(val, test, candidates=cands, n_boot=0)
    for k in ("error", "nll", "ece", "adaptive_ece", "classwise_ece", "mce", "brier"):
        a, b = full["calibrators"][0]["test"][k]["estimate"], streamed["calibrators"][0]["test"][k]["estimate"]
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), k
    assert streamed["n_boot"] == 0 and arrays["bins_after"].n_samples == 500


def test_a_two_split_file_given_as_val_and_test_takes_each_split(trained_run, tmp_path):
    logits = trained_run / "logits.pt"
    out = tmp_path / "c"
    assert (
        main(
            [
                "calibrate",
                "--val",
                str(logits),
                "--test",
                str(logits),
                "--kind",
                "logits",
                "--out",
                str(out),
                "--calibrators",
                "temperature",
                "--n-boot",
                "0",
            ]
        )
        == 0
    )
    rep = json.loads((out / "calibration.json").read_text())
    saved = torch.load(logits, weights_only=True)
    assert (rep["n_val"], rep["n_test"]) == (len(saved["val_labels"]), len(saved["test_labels"]))


def test_unreadable_numpy_files_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", np.zeros(1, dtype=np.int64))
    for args in (
        ["--val", str(tmp_path / "bad.npz"), "--test", str(tmp_path / "bad.npz")],
        [
            "--val",
            str(tmp_path / "obj.npy"),
            "--val-labels",
            str(tmp_path / "y.npy"),
            "--test",
            str(tmp_path / "obj.npy"),
            "--test-labels",
            str(tmp_path / "y.npy"),
        ],
    ):
        assert main(["calibrate", *args, "--kind", "logits", "--out", str(tmp_path / "o")]) == 2
        err = _err(capsys)
        assert "not a readable" in err
