"""The committed results page (docs/claims) is reproducible from the run summaries committed beside it.

One cell of the table and one row of the claims are recomputed here by hand from the runs' ``report.json``
files (mean over seeds with scipy's t-interval), and ``focalcal table`` is run on the committed summaries.
"""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from focalcal.cli.main import main

PAGE = Path(__file__).resolve().parents[2] / "docs" / "claims"
RUNS = PAGE / "runs" / "cifar10" / "resnet20"


def _reports(label: str) -> dict[int, dict]:
    folders = sorted((RUNS / label).glob("seed*"))
    assert folders, f"no committed runs for {label} under {RUNS}"
    return {int(f.name[4:]): json.loads((f / "report.json").read_text()) for f in folders}


def _t_interval(values) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float)
    low, high = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    return float(v.mean()), float(low), float(high)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cell(rows, loss: str, metric: str, stage: str) -> dict[str, str]:
    hits = [r for r in rows if r["loss"] == loss and r["metric"] == metric and r["stage"] == stage]
    assert len(hits) == 1, (loss, metric, stage, len(hits))
    return hits[0]


def test_page_lists_every_loss_with_three_seeds():
    rows = _rows(PAGE / "table.csv")
    losses = {r["loss"] for r in rows}
    assert {"CE", "Brier", "MMCE", "LS-0.05", "FL-1", "FL-2", "FL-3", "FLSc-531", "FLSD-53"} <= losses
    for r in rows:
        if r["table"] == "main":
            assert int(r["n"]) >= 3, r


def test_flsd53_ece_cell_recomputed_by_hand():
    reports = _reports("FLSD-53")
    values = [reports[s]["test"]["before"]["ece"] for s in sorted(reports)]
    mean, low, high = _t_interval(values)
    cell = _cell(_rows(PAGE / "table.csv"), "FLSD-53", "ece", "before")
    assert int(cell["n"]) == len(values)
    assert float(cell["value"]) == pytest.approx(mean, abs=1e-12)
    assert float(cell["low"]) == pytest.approx(low, abs=1e-12)
    assert float(cell["high"]) == pytest.approx(high, abs=1e-12)


def test_table_command_on_committed_summaries_gives_the_committed_cells(tmp_path):
    assert main(["table", str(PAGE / "runs"), "--out", str(tmp_path), "--no-bootstrap"]) == 0
    fresh = _rows(tmp_path / "table.csv")
    committed = _rows(PAGE / "table.csv")
    for loss, metric, stage in (("CE", "ece", "before"), ("FL-3", "nll", "after"), ("Brier", "error", "before")):
        a, b = _cell(fresh, loss, metric, stage), _cell(committed, loss, metric, stage)
        assert float(a["value"]) == pytest.approx(float(b["value"]), abs=1e-12)
        assert a["n"] == b["n"]


def test_claim_one_row_recomputed_by_hand():
    """Claim 1, FLSD-53 - CE on ECE before TS: the paired difference over seeds, in percentage points."""
    ce, flsd = _reports("CE"), _reports("FLSD-53")
    seeds = sorted(set(ce) & set(flsd))
    d = [100 * (flsd[s]["test"]["before"]["ece"] - ce[s]["test"]["before"]["ece"]) for s in seeds]
    mean, low, high = _t_interval(d)
    rows = [r for r in _rows(PAGE / "claims.csv") if r["claim"] == "1" and r["what"].startswith("FLSD-53 - CE, ECE ")]
    assert len(rows) == 1
    row = rows[0]
    assert float(row["mean"]) == pytest.approx(mean, abs=1e-9)
    assert float(row["low"]) == pytest.approx(low, abs=1e-9)
    assert float(row["high"]) == pytest.approx(high, abs=1e-9)
    expected = "holds" if high < 0 else ("fails" if low > 0 else "not shown")
    assert row["verdict"] == expected
    assert not math.isnan(mean)


def test_claim_three_no_higher_error_is_not_refuted_when_the_interval_holds_zero():
    """Claim 3 (no higher test error), FL-3 - CE: by hand; an interval containing 0 does not refute it."""
    ce, fl3 = _reports("CE"), _reports("FL-3")
    seeds = sorted(set(ce) & set(fl3))
    mean, low, high = _t_interval(
        [100 * (fl3[s]["test"]["before"]["error"] - ce[s]["test"]["before"]["error"]) for s in seeds]
    )
    row = next(r for r in _rows(PAGE / "claims.csv") if r["claim"] == "3" and r["what"] == "FL-3 - CE, test error")
    assert float(row["mean"]) == pytest.approx(mean, abs=1e-9) and float(row["high"]) == pytest.approx(high, abs=1e-9)
    expected = (
        "holds (lower error)" if high < 0 else ("fails" if low > 0 else "not refuted (no significant difference)")
    )
    assert row["verdict"] == expected


def test_committed_page_is_what_the_claims_command_writes_from_its_export(tmp_path):
    """The committed claims.md / claims.csv are not stale: the current code writes them again from the export."""
    assert main(["claims", str(PAGE / "runs"), "--out", str(tmp_path)]) == 0
    for name in ("claims.md", "claims.csv"):
        assert (tmp_path / name).read_text() == (PAGE / name).read_text(), (
            f"docs/claims/{name} is stale: run make claims"
        )
