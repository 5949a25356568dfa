"""`focalcal calibrate` chooses by the one-standard-error rule on cross-validated NLL, not by the argmin.

A hand-made case where the rule and the argmin disagree (the demo's: Dirichlet's 110 parameters against one
temperature for 0.001 nats), the fold standard error recomputed by hand, the rule and its margin printed and
written, and ``--choose`` forcing a calibrator.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from focalcal.calibration import TemperatureScaling, build_calibrator
from focalcal.calibration.compare import fold_standard_error, one_se_choice
from focalcal.cli.main import main
from focalcal.errors import InputError


def test_the_rule_prefers_the_simplest_calibrator_within_one_standard_error():
    # the demo's numbers: Dirichlet 1.4980 (110 parameters) vs temperature 1.4990 (1); folds' SE 0.004
    means = [1.4990, 1.4980, 1.5600]
    ses = [0.0041, 0.0040, 0.0050]
    sizes = [1, 110, 300]
    rule = one_se_choice(means, ses, sizes)
    assert int(np.argmin(means)) == 1  # the argmin picks Dirichlet ...
    assert rule["chosen"] == 0 and rule["best"] == 1  # ... the rule the temperature
    assert rule["threshold"] == pytest.approx(1.4980 + 0.0040, abs=1e-12)
    assert rule["margin"] == pytest.approx(1.4980 + 0.0040 - 1.4990, abs=1e-12)
    # a simpler calibrator outside one SE is not chosen: the argmin stands
    assert one_se_choice([1.5100, 1.4980], [0.001, 0.004], [1, 110])["chosen"] == 1
    # equal sizes within the threshold: the lower mean; a NaN mean is never chosen; unknown size comes last
    assert one_se_choice([1.4990, 1.4985, 1.4980], [0.01, 0.01, 0.01], [1, 1, 110])["chosen"] == 1
    assert one_se_choice([math.nan, 1.50], [0.1, 0.01], [1, 110])["chosen"] == 1
    assert one_se_choice([1.4990, 1.4980], [0.01, 0.01], [None, 110])["chosen"] == 1
    with pytest.raises(InputError, match="no calibrator has a finite cross-validated NLL"):
        one_se_choice([math.nan], [math.nan], [1])


def test_compare_chooses_by_the_rule_where_the_argmin_disagrees(monkeypatch):
    """A hand-made cross-validation: Dirichlet has the lowest mean CV NLL by 0.001 nats, well inside one standard
    error over the folds; ``compare`` saves temperature scaling, and reports the rule's numbers."""
    from focalcal.calibration import compare as compare_mod
    from focalcal.calibration.outputs import Outputs

    folds = {
        "temperature": [1.4990, 1.4890, 1.5090, 1.4940, 1.5040],  # mean 1.4990
        "vector": [1.4985, 1.4885, 1.5085, 1.4935, 1.5035],  # mean 1.4985
        "dirichlet": [1.4980, 1.4880, 1.5080, 1.4930, 1.5030],  # mean 1.4980, SE 0.0035
    }

    def fake_folds(candidate, logits, labels, **kw):
        return folds[candidate.name], [20] * 5

    def fake_mean(candidate, logits, labels, **kw):  # the same numbers for a caller of the mean alone
        return sum(folds[candidate.name]) / 5

    monkeypatch.setattr(compare_mod, "cv_nll_folds", fake_folds, raising=False)
    monkeypatch.setattr(compare_mod, "cv_nll", fake_mean)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (200,), generator=g)
    z = (2.0 * torch.nn.functional.one_hot(y, 3) + torch.randn(200, 3, generator=g)).double()
    val = Outputs(z[:100], y[:100], "logits", "val")
    test = Outputs(z[100:], y[100:], "logits", "test")
    cands = [compare_mod.Candidate("temperature", {"method": "nll"}), compare_mod.Candidate("vector", {})]
    cands.append(compare_mod.Candidate("dirichlet", {}))
    report, arrays = compare_mod.compare(val, test, candidates=cands, n_boot=0)
    means = [c["val_cv_nll"] for c in report["calibrators"]]
    assert int(np.argmin(means)) == 2  # the argmin: Dirichlet (12 parameters)
    assert report["chosen"] == 0 and arrays["calibrators"][0].n_parameters == 1  # the rule: temperature
    se = np.std(folds["dirichlet"], ddof=1) / math.sqrt(5)
    assert report["calibrators"][2]["val_cv_nll_se"] == pytest.approx(se, rel=1e-12)
    assert report["rule"]["threshold"] == pytest.approx(1.4980 + se, rel=1e-12)
    assert report["rule"]["margin"] == pytest.approx(1.4980 + se - 1.4990, rel=1e-9)


def test_fold_standard_error_by_hand():
    folds = [1.50, 1.46, 1.55, 1.49, 1.52]
    mean = sum(folds) / 5
    sd = math.sqrt(sum((f - mean) ** 2 for f in folds) / 4)
    assert fold_standard_error(folds) == pytest.approx(sd / math.sqrt(5), rel=1e-12)
    assert math.isnan(fold_standard_error([1.0]))


def test_calibrators_report_their_number_of_parameters():
    z = torch.randn(200, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(1))
    assert TemperatureScaling().fit(z, y).n_parameters == 1
    assert build_calibrator("vector", max_iter=5).fit(z, y).n_parameters == 2 * 4
    assert build_calibrator("dirichlet", max_iter=5).fit(z, y).n_parameters == 4 * 4 + 4
    assert build_calibrator("matrix", max_iter=5).fit(z, y).n_parameters == 4 * 4 + 4
    assert build_calibrator("histogram", n_bins=15).fit(z, y).n_parameters == 4 * 15


def _outputs(tmp_path, n=600, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    z = (3.0 * torch.nn.functional.one_hot(y, k) + 1.5 * torch.randn(n, k, generator=g)).double()
    path = tmp_path / "o.pt"
    torch.save({"val_logits": z[:300], "val_labels": y[:300], "test_logits": z[300:], "test_labels": y[300:]}, path)
    return path, z[:300], y[:300]


def test_the_cli_applies_the_rule_and_states_it_with_its_margin(tmp_path, capsys):
    path, zv, yv = _outputs(tmp_path)
    out = tmp_path / "c"
    args = ["calibrate", "--data", str(path), "--kind", "logits", "--out", str(out), "--n-boot", "50"]
    assert main([*args, "--calibrators", "temperature,vector"]) == 0
    printed = capsys.readouterr()
    rep = json.loads((out / "calibration.json").read_text())
    cals = rep["calibrators"]
    # each calibrator's fold NLLs, recomputed by hand for temperature scaling: fit on 4/5, score the fifth
    order = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    folds = []
    for f in range(5):
        held = order[f::5]
        keep = torch.ones(300, dtype=torch.bool)
        keep[held] = False
        ts = TemperatureScaling().fit(zv[keep], yv[keep])
        folds.append(float(torch.nn.functional.cross_entropy(ts.transform(zv[held]), yv[held])))
    np.testing.assert_allclose(cals[0]["val_cv_nll_folds"], folds, rtol=1e-9)
    assert cals[0]["val_cv_nll_se"] == pytest.approx(np.std(folds, ddof=1) / math.sqrt(5), rel=1e-9)
    assert [c["n_parameters"] for c in cals] == [1, 8]
    for entry in [rep["uncalibrated"], *(c["test"] for c in cals)]:  # every interval contains its estimate
        for m in entry.values():
            assert m["low"] <= m["estimate"] <= m["high"]
    # the rule, recomputed from the report's own numbers
    cv = [c["val_cv_nll"] for c in cals]
    best = int(np.argmin(cv))
    threshold = cv[best] + cals[best]["val_cv_nll_se"]
    within = [i for i, v in enumerate(cv) if v <= threshold]
    chosen = min(within, key=lambda i: (cals[i]["n_parameters"], cv[i]))
    assert rep["chosen"] == chosen and rep["rule"]["best"] == best and not rep["rule"]["forced"]
    assert rep["rule"]["threshold"] == pytest.approx(threshold, rel=1e-12)
    assert "one-standard-error rule" in rep["criterion"]
    saved = json.loads((out / "calibrator.json").read_text())
    assert saved["label"] == cals[chosen]["label"]
    # printed and written: the rule, the threshold and the margin
    text = printed.out + printed.err
    assert "one-standard-error rule" in text and f"threshold {threshold:.4f}" in text
    assert f"{threshold - cv[chosen]:.4f} below the threshold" in text
    md = (out / "calibration.md").read_text()
    assert f"threshold {threshold:.4f}" in md and "val CV NLL ± SE" in md
    assert "95% bootstrap interval over test samples (50 resamples)" in md


def test_choose_forces_a_calibrator(tmp_path, capsys):
    path, _, _ = _outputs(tmp_path, seed=1)
    out = tmp_path / "c"
    base = ["calibrate", "--data", str(path), "--kind", "logits", "--n-boot", "0"]
    assert main([*base, "--out", str(out), "--calibrators", "temperature,vector", "--choose", "vector"]) == 0
    rep = json.loads((out / "calibration.json").read_text())
    assert rep["calibrators"][rep["chosen"]]["name"] == "vector" and rep["rule"]["forced"]
    assert json.loads((out / "calibrator.json").read_text())["label"] == "vector scaling"
    assert "forced by --choose" in capsys.readouterr().out
    rc = main([*base, "--calibrators", "temperature,vector", "--choose", "dirichlet", "--out", str(tmp_path / "d")])
    assert rc != 0
    err = capsys.readouterr().err
    assert "--choose 'dirichlet' is not among the calibrators compared; choose one of: temperature:nll, vector" in err
