"""Figures and run-log tables on hand-made numbers (no training): labels, tables, what each plot draws."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from focalcal.atomic import atomic_write_csv
from focalcal.cli.plot import g_table
from focalcal.evaluation.runlog import epoch_rows, read_run, read_runs, require_columns
from focalcal.losses import g_factor, loss_label, p_threshold
from focalcal.plots import Curves, analysis_sheet, g_figure, nll_entropy_figure, weight_norm_figure


@pytest.mark.parametrize(
    "loss,opts,label",
    [
        ("ce", {}, "CE"),
        ("focal", {"gamma": 3.0}, "FL-3"),
        ("focal", {}, "FL-3"),
        ("fl1", {}, "FL-1"),
        ("focal", {"gamma": 2.5, "reduction": "sum"}, "FL-2.5"),
        ("flsd53", {}, "FLSD-53"),
        ("flsc531", {}, "FLSc-531"),
        ("ls", {"smoothing": 0.05}, "LS-0.05"),
        ("mmce_weighted", {"lam": 2.0}, "MMCE"),
        ("mmce_weighted", {"lam": 4}, "MMCE (λ=4)"),
        ("mbls", {"margin": 5}, "MbLS (margin=5)"),
        ("flsd", {"thresholds": [0.2], "gammas": [5.0, 3.0]}, "FLSD-53"),
        ("flsd", {"thresholds": "0.19", "gammas": "5,3"}, "FLSD-53"),  # the text protocol's threshold
        ("flsd", {"thresholds": [0.2, 0.5], "gammas": [5, 3, 2]}, "FLSD-532"),
        ("flsd", {"thresholds": [0.2], "gammas": [2.5, 1]}, "FLSD (thresholds=0.2, gammas=2.5,1)"),
        ("flsc", {"schedule": "0:5,14:3,35:1", "reference_epochs": 50}, "FLSc-531"),
        ("flsc", {"schedule": "0:4,10:2"}, "FLSc-42"),
        ("my_loss", {"k": 1}, "my_loss (k=1)"),
    ],
)
def test_loss_label_uses_the_papers_names(loss, opts, label):
    assert loss_label(loss, opts) == label


def _fake_run(path, loss="ce", opts=None, epochs=4, lrs=(0.1, 0.1, 0.01, 0.001)):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"loss": loss, "loss_options": opts or {}}))
    recs = []
    for e in range(1, epochs + 1):
        recs.append(
            {
                "epoch": e,
                "lr": lrs[e - 1],
                "fc_weight_norm": 1.0 + e,
                "test_nll": 1.0 / e,
                "test_nll_incorrect": None if e == epochs else 2.0 * e,
                "train_acc": 0.2 * e,
            }
        )
    # written out of order: the reader sorts by epoch
    (path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(recs)) + "\n")
    return path


def test_read_run_columns_nan_for_null_and_lr_drops(tmp_path):
    run = read_run(_fake_run(tmp_path / "r"))
    assert run.epochs.tolist() == [1, 2, 3, 4]
    assert run.lr_drops() == [2, 3]
    col = run.column("test_nll_incorrect")
    assert col[:3].tolist() == [2.0, 4.0, 6.0] and np.isnan(col[3])
    assert np.isnan(run.column("absent")).all() and not run.has("absent") and run.has("test_nll")
    rows = epoch_rows([run], ["test_nll_incorrect"])
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and rows[-1]["test_nll_incorrect"] is None
    with pytest.raises(ValueError, match="absent"):
        require_columns([run], ["absent"], "why")


def test_read_runs_disambiguates_equal_labels_and_checks_label_count(tmp_path):
    runs = read_runs([_fake_run(tmp_path / "a"), _fake_run(tmp_path / "b")])
    assert [r.label for r in runs] == ["CE [a]", "CE [b]"]
    with pytest.raises(ValueError, match="one --label per run"):
        read_runs([tmp_path / "a", tmp_path / "b"], ["x"])


def test_read_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="focalcal train"):
        read_run(tmp_path)
    bad = _fake_run(tmp_path / "bad")
    (bad / "log.jsonl").write_text('{"epoch": 1}\n{oops\n')
    with pytest.raises(ValueError, match="line 2"):
        read_run(bad)
    (bad / "log.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_run(bad)


def test_g_table_thresholds_are_where_g_crosses_one():
    p, values, thresholds, rows = g_table([0.0, 1.0, 3.0, 5.0], points=101)
    assert p[0] == 0.0 and p[-1] == 1.0 and len(rows) == 4 * 101
    assert 0.0 not in thresholds  # g(p, 0) = 1 - p: no crossing
    assert thresholds[1.0] == pytest.approx(1 / np.e, abs=1e-9)
    for gamma, pt in thresholds.items():
        assert pt == p_threshold(gamma) and g_factor(pt, gamma) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(values[3.0], g_factor(p, 3.0))
    with pytest.raises(ValueError):
        g_table([-1.0])


def test_g_figure_draws_curves_unit_line_and_threshold_markers():
    p, values, thresholds, _ = g_table([1.0, 2.0, 3.0], points=51)
    fig = g_figure(p, values, thresholds)
    (ax,) = fig.axes
    lines = ax.get_lines()
    curves = [ln for ln in lines if len(ln.get_xdata()) == 51]
    np.testing.assert_allclose(curves[2].get_ydata(), values[3.0])
    verticals = sorted(float(ln.get_xdata()[0]) for ln in lines if np.ptp(ln.get_xdata()) == 0)
    assert verticals == pytest.approx(sorted(thresholds.values()))
    assert any(np.all(np.asarray(ln.get_ydata()) == 1.0) for ln in lines)  # g = 1
    assert ax.get_xlabel().startswith("p") and "γ" in ax.get_ylabel()


def _curves(label, offset):
    e = np.arange(1, 6)
    cols = {
        f"{s}_{k}{g}": offset + e * (i + 1.0)
        for i, s in enumerate(("train_eval", "test"))
        for k in ("nll", "entropy")
        for g in ("", "_correct", "_incorrect")
    }
    cols["test_nll_incorrect"] = np.array([1, 2, np.nan, 4, 5.0])
    cols["fc_weight_norm"] = offset + np.sqrt(e)
    cols["test_n_correct"], cols["test_n_incorrect"] = np.full(5, 150.0), np.full(5, 50.0)
    return Curves(label, e, cols, (3,))


def test_nll_entropy_figure_panels_units_and_data():
    curves = [_curves("CE", 0.0), _curves("focal (γ=3)", 0.5)]
    fig = nll_entropy_figure(curves)
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 4
    assert [a.get_ylabel() for a in axes] == [
        "NLL (nats)",
        "NLL (nats)",
        "softmax entropy (nats)",
        "softmax entropy (nats)",
    ]
    assert all(a.get_xlabel() == "epoch" for a in axes)
    assert "n=200" in axes[1].get_title()
    test_nll = [ln for ln in axes[1].get_lines() if len(ln.get_xdata()) == 5]
    assert len(test_nll) == 2 * 3  # runs x {all, correct, incorrect}
    # a group with no samples in an epoch of a pass (NaN) leaves a gap in the line
    np.testing.assert_array_equal(test_nll[2].get_ydata(), curves[0].columns["test_nll_incorrect"])
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"CE", "focal (γ=3)", "correct", "incorrect", "lr drop"} <= set(legend)


def test_weight_norm_figure_and_sheet_render(tmp_path):
    curves = [_curves("CE", 0.0), _curves("FLSD-53", 0.5)]
    fig = weight_norm_figure(curves)
    (ax,) = fig.axes
    assert "weight norm" in ax.get_ylabel() and [t.get_text() for t in ax.get_legend().get_texts()][:2] == [
        "CE",
        "FLSD-53",
    ]
    p, values, thresholds, _ = g_table([1.0, 2.0])
    sheet = analysis_sheet(curves, p=p, g_values=values, thresholds=thresholds)
    sheet.savefig(tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no run has"):
        weight_norm_figure([Curves("x", np.arange(1, 3), {}, ())])


def _every_second_epoch(curves: Curves) -> Curves:
    """The same run with its dynamics passes on epochs 2, 4 and the last only (``dynamics_every: 2``)."""
    ran = np.isin(curves.epochs, [2, 4, 5])
    cols = {
        k: np.where(ran, v, np.nan) if k.startswith(("test_", "train_eval_")) else v for k, v in curves.columns.items()
    }
    return Curves(curves.label, curves.epochs, cols, curves.lr_drops)


def test_dynamics_logged_every_second_epoch_are_lines_through_the_passes():
    from focalcal.plots import epoch_metric_figure

    curves = [_every_second_epoch(_curves("CE", 0.0)), _every_second_epoch(_curves("FLSD-53", 0.5))]
    fig = nll_entropy_figure(curves)
    assert "n=200" in fig.axes[1].get_title()  # counted at the first epoch with a pass, not at epoch 1
    lines = [ln for ln in fig.axes[1].get_lines() if len(ln.get_xdata()) == 3]
    assert len(lines) == 2 * 3
    np.testing.assert_array_equal(lines[0].get_xdata(), [2, 4, 5])
    np.testing.assert_array_equal(lines[0].get_ydata(), [4.0, 8.0, 10.0])  # test_nll = offset + 2 * epoch
    np.testing.assert_array_equal(lines[2].get_ydata(), [2.0, 4.0, 5.0])  # incorrect: NaN at epoch 3 not run
    fig = epoch_metric_figure(curves, "test_nll", ylabel="NLL", title="t")
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_xdata(), [2, 4, 5])
    fig = epoch_metric_figure(curves, "fc_weight_norm", ylabel="norm", title="t")  # logged every epoch
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_xdata(), [1, 2, 3, 4, 5])


def test_write_csv_blank_cells_for_missing_values(tmp_path):
    path = atomic_write_csv(tmp_path / "t.csv", [{"a": 1, "b": None}, {"a": float("nan"), "c": 0.1 + 0.2}])
    assert path.read_text().splitlines() == ["a,b,c", "1,,", f",,{0.1 + 0.2!r}"]


def test_reliability_gaps_read_apart_from_the_accuracy_bars():
    import numpy as np

    from focalcal.metrics import BinStats
    from focalcal.plots import reliability_grid

    bins = BinStats(
        edges=np.array([0.0, 0.5, 1.0]),
        counts=np.array([10, 10]),
        mean_confidence=np.array([0.2, 0.9]),
        accuracy=np.array([0.4, 0.6]),
    )
    fig = reliability_grid([("t", bins, None)])
    ax = fig.axes[0]
    groups = {c.get_label(): c.patches for c in ax.containers}
    (under,) = groups["gap: under-confident"]  # bin 1: accuracy 0.4 > confidence 0.2
    (over,) = groups["gap: over-confident"]  # bin 2: confidence 0.9 > accuracy 0.6
    assert (under.get_y(), under.get_height()) == pytest.approx((0.2, 0.2))
    assert (over.get_y(), over.get_height()) == pytest.approx((0.6, 0.3))
    acc_bar = groups["accuracy"][0]
    assert under.get_facecolor()[3] == 1.0 and under.zorder > acc_bar.zorder  # opaque, on top: no colour mixing
    assert under.get_facecolor()[:3] != acc_bar.get_facecolor()[:3] != over.get_facecolor()[:3]
