"""The paper's claims, measured on a set of runs (e.g. the ``cpu`` family over seeds), with 95% intervals.

Each claim compares losses on the same seeds: for every seed the difference (focal minus cross-entropy, say)
is computed, and the claim's verdict comes from the 95% t-interval of the mean difference over seeds, clipped
to the range of the difference (:func:`focalcal.metrics.intervals.seed_interval`; no interval, so no verdict,
below 3 seeds):

- **holds**: the interval lies entirely on the side the paper claims;
- **not shown**: the interval contains 0 (the data cannot tell at this number of seeds);
- **fails**: the interval lies entirely on the other side.

The claims (the paper's Secs. 3-5):

1. focal loss (FL-3, FLSD-53) has lower ECE, AdaECE and Classwise-ECE than CE before temperature scaling;
2. and after temperature scaling;
3. without higher test error;
4. CE's test NLL rises after the first learning-rate drop, because of the misclassified samples, while
   their entropy keeps falling;
5. focal loss reduces that rise, ordered by gamma (FL-3 < FL-2 < FL-1 < CE);
6. the last layer's weight norm is larger for focal loss early in training and smaller once CE over-fits;
7. focal loss gives a higher OOD AUROC (softmax entropy) before and after temperature scaling.

The per-epoch quantities come from each run's ``log.jsonl`` (test NLL and entropy on the run's per-epoch
test subset), the rest from ``report.json`` and ``ood.json``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_csv, atomic_write_text, is_temp_file
from ..engine import RunFolder
from ..engine.runfolder import CONFIG, LOG, OOD, REPORT
from ..errors import InputError
from ..evaluation.runlog import curves_of, read_runs
from ..losses.analysis import g_table
from ..metrics.intervals import MIN_SEEDS, NONNEGATIVE, UNBOUNDED, UNIT_RANGE, difference_bounds, seed_interval
from ..plots import g_figure, nll_entropy_figure, nll_over_epochs_figure, save_figure, weight_norm_figure
from ..registry import ascii_label
from .table import RunResult, Tables, build, csv_rows, fig6, fig7, fig7_name, markdown

FOCAL = ("FL-3", "FLSD-53")
#: The verdict of a claim the runs cannot measure, by the losses it needs beside CE.
NEEDS_FOCAL = "not measurable: needs FL-3 or FLSD-53 runs"
NEEDS_GAMMAS = "not measurable: needs FL-1, FL-2 or FL-3 runs"
CAL_METRICS = (("ece", "ECE"), ("adaptive_ece", "AdaECE"), ("classwise_ece", "Classwise-ECE"))


@dataclass
class Diff:
    """The mean over seeds of a paired difference, its 95% interval (NaN when there is none: below
    :data:`~focalcal.metrics.intervals.MIN_SEEDS` seeds), the seeds' differences, and the interval's note."""

    mean: float
    low: float
    high: float
    n: int
    values: list[float] = field(default_factory=list)
    note: str = ""

    def verdict(self, want: str) -> str:
        """``want``: ``"negative"`` (the claim says the difference is below 0) or ``"positive"``."""
        if self.n == 0:
            return "not shown (no seed run for both)"
        if self.n < MIN_SEEDS or math.isnan(self.low):
            return f"not shown ({self.n} seed{'s' if self.n > 1 else ''}: no interval below {MIN_SEEDS})"
        below, above = self.high < 0, self.low > 0
        if want == "negative":
            return "holds" if below else ("fails" if above else "not shown")
        return "holds" if above else ("fails" if below else "not shown")


def paired(
    values_a: dict[int, float],
    values_b: dict[int, float],
    bounds_a: tuple[float, float] = UNBOUNDED,
    bounds_b: tuple[float, float] = UNBOUNDED,
    scale: float = 100.0,
) -> Diff:
    """``a - b`` over the seeds both have, with the t-interval clipped to the range of the difference
    (``bounds_a`` / ``bounds_b``: the ranges of a and b; ``scale``: their display scale, for the note)."""
    seeds = sorted(set(values_a) & set(values_b))
    d = [values_a[s] - values_b[s] for s in seeds]
    if not d:
        return Diff(math.nan, math.nan, math.nan, 0, note="no interval: no seed run for both")
    ci = seed_interval(d, bounds=difference_bounds(bounds_a, bounds_b), scale=scale)
    low, high = (math.nan, math.nan) if ci.low is None else (ci.low, ci.high)
    return Diff(ci.mean, low, high, ci.n, d, ci.note)


# -- per-run quantities --------------------------------------------------------------------------------
def _log(run: RunResult) -> list[dict[str, Any]]:
    return RunFolder(run.path).read_log()


def nll_dynamics(log: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """The paper's Sec. 3 observation, measured on one run's per-epoch log (its test subset).

    After the first lr drop the test NLL falls to a minimum and then (the paper says) rises: returns the epoch
    of the first drop, the epoch of that minimum, the rise of the test NLL from the minimum to the last epoch,
    the rises of the NLL of correctly / incorrectly classified samples from their own minima after the drop,
    and the change of the misclassified samples' entropy over the same window (minimum of the NLL to the last
    epoch), the window in which the paper says it "keeps falling". ``None`` without an lr drop or a test NLL.
    """
    lrs = [r.get("lr") for r in log]
    drops = [int(log[i]["epoch"]) for i in range(len(lrs) - 1) if lrs[i + 1] is not None and lrs[i + 1] < lrs[i]]
    after = [r for r in log if r.get("test_nll") is not None and drops and int(r["epoch"]) > drops[0]]
    if not drops or len(after) < 2:
        return None

    def rise(key: str) -> float:
        vals = [r[key] for r in after if r.get(key) is not None]
        return vals[-1] - min(vals) if vals else math.nan

    best = min(after, key=lambda r: r["test_nll"])
    window = [
        r["test_entropy_incorrect"]
        for r in after
        if int(r["epoch"]) >= int(best["epoch"]) and r.get("test_entropy_incorrect") is not None
    ]
    return {
        "first_drop": drops[0],
        "min_epoch": int(best["epoch"]),
        "nll_rise": after[-1]["test_nll"] - best["test_nll"],
        "nll_incorrect_rise": rise("test_nll_incorrect"),
        "nll_correct_rise": rise("test_nll_correct"),
        "entropy_incorrect_change": window[-1] - window[0] if len(window) >= 2 else math.nan,
    }


def weight_norms(run: RunResult) -> tuple[float, float]:
    """The last layer's weight norm after the first epoch and after the last one."""
    log = _log(run)
    return float(log[0]["fc_weight_norm"]), float(log[-1]["fc_weight_norm"])


# -- the claims -------------------------------------------------------------------------------------------
@dataclass
class Claim:
    number: int
    text: str
    rows: list[dict[str, Any]]  # each: {"what", "mean", "low", "high", "n", "verdict", "units"}
    summary: str


def _by_label(tables: Tables) -> dict[str, list[RunResult]]:
    """The runs by loss label, for one (dataset, model): claims pair seeds within one experiment setting."""
    settings = sorted({(d, m) for d, m, _ in tables.groups})
    if len(settings) > 1:
        raise InputError(
            "the claims compare losses on one dataset and model; these runs span "
            + ", ".join(f"{d}/{m}" for d, m in settings)
            + ": give the runs of one of them (e.g. runs/paper/cifar10/resnet50)"
        )
    return {label: list(runs) for (_, _, label), runs in tables.groups.items()}


def _per_seed(runs: Sequence[RunResult], fn) -> dict[int, float]:
    return {r.seed: float(fn(r)) for r in runs}


def _row(what: str, d: Diff, want: str, scale: float = 100.0, units: str = "points") -> dict[str, Any]:
    return {
        "what": what,
        "mean": d.mean * scale,
        "low": d.low * scale,
        "high": d.high * scale,
        "n": d.n,
        "verdict": d.verdict(want),
        "units": units,
        "interval": d.note,
    }


def _summary(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "not measured (no runs for it)"
    verdicts = [r["verdict"] for r in rows]
    if all(v == "holds" for v in verdicts):
        return "holds"
    if any(v == "fails" for v in verdicts):
        return "fails" if all(v == "fails" for v in verdicts) else "mixed: fails in part"
    if any(v == "holds" for v in verdicts):
        return "partly shown"
    return "not shown"


def _not_measurable(number: int, text: str, what: str, needs: str) -> Claim:
    """A claim the runs cannot measure: one row saying which losses it needs (``needs``, e.g.
    :data:`NEEDS_FOCAL`), with no numbers (NaN) and no seeds."""
    row = {"what": what, "mean": math.nan, "low": math.nan, "high": math.nan, "n": 0, "verdict": needs}
    return Claim(number, text, [{**row, "units": "", "interval": ""}], needs)


def _measured(number: int, text: str, rows: list[dict[str, Any]], what: str, needs: str) -> Claim:
    """The claim over ``rows`` with their summary verdict, or, with no rows, :func:`_not_measurable`."""
    return Claim(number, text, rows, _summary(rows)) if rows else _not_measurable(number, text, what, needs)


def evaluate_claims(tables: Tables) -> list[Claim]:
    """Every claim that the runs in ``tables`` can speak to (the CE runs are required).

    A claim that needs losses the runs lack (FL-3 or FLSD-53 for claims 1-3, 6 and 7; FL-1, FL-2 or FL-3 for
    claim 5) gets one row whose verdict, :data:`NEEDS_FOCAL` or :data:`NEEDS_GAMMAS`, says which.

    Raises:
        InputError: no CE runs; runs of more than one dataset and model.
    """
    by = _by_label(tables)
    if "CE" not in by:
        raise InputError("the claims compare against cross-entropy: no CE runs among the runs given")
    ce = by["CE"]
    focal = [f for f in FOCAL if f in by]
    claims: list[Claim] = []

    def metric(stage: str, key: str):
        return lambda r: r.report["test"][stage][key]

    for number, stage, words in (
        (1, "before", "before temperature scaling"),
        (2, "after", "after temperature scaling"),
    ):
        text = f"Focal loss has lower ECE, AdaECE and Classwise-ECE than CE {words}"
        rows = [
            _row(
                f"{f} - CE, {title} {words}",
                paired(_per_seed(by[f], metric(stage, key)), _per_seed(ce, metric(stage, key)), UNIT_RANGE, UNIT_RANGE),
                "negative",
            )
            for f in focal
            for key, title in CAL_METRICS
        ]
        claims.append(_measured(number, text, rows, f"focal loss - CE, calibration errors {words}", NEEDS_FOCAL))

    rows = [
        _row(
            f"{f} - CE, test error",
            paired(
                _per_seed(by[f], metric("before", "error")),
                _per_seed(ce, metric("before", "error")),
                UNIT_RANGE,
                UNIT_RANGE,
            ),
            "negative",
        )
        for f in focal
    ]
    for r in rows:  # "without higher error": only a significant increase refutes it
        if r["n"] >= MIN_SEEDS:
            r["verdict"] = {"fails": "fails", "holds": "holds (lower error)"}.get(
                r["verdict"], "not refuted (no significant difference)"
            )
    verdict3 = _summary(rows)
    if rows:  # the claim holds where focal's error is lower; a difference not shown does not refute it
        verdicts = {r["verdict"] for r in rows}
        lower = verdicts == {"holds (lower error)"}
        verdict3 = "fails" if "fails" in verdicts else ("holds" if lower else "not refuted")
    if rows and any(r["n"] < MIN_SEEDS for r in rows):
        verdict3 = f"not shown (fewer than {MIN_SEEDS} seeds: no interval)"
    if focal:
        claims.append(Claim(3, "... without higher test error", rows, verdict3))
    else:
        claims.append(_not_measurable(3, "... without higher test error", "focal loss - CE, test error", NEEDS_FOCAL))

    dyn = {label: {r.seed: nll_dynamics(_log(r)) for r in runs} for label, runs in by.items()}
    ce_dyn = {s: d for s, d in dyn["CE"].items() if d}
    if ce_dyn:
        rows = []
        for key, what, want in (
            ("nll_rise", "CE test NLL rise after the first lr drop (nats)", "positive"),
            ("nll_incorrect_rise", "... of its misclassified samples (nats)", "positive"),
            ("incorrect_minus_correct", "... of misclassified minus correctly classified samples (nats)", "positive"),
            (
                "entropy_incorrect_change",
                "CE entropy change of misclassified samples while the NLL rises (nats)",
                "negative",
            ),
        ):
            if key == "incorrect_minus_correct":  # "because of misclassified samples": their rise dominates
                vals = {s: d["nll_incorrect_rise"] - d["nll_correct_rise"] for s, d in ce_dyn.items()}
            else:
                vals = {s: d[key] for s, d in ce_dyn.items()}
            vals = {s: v for s, v in vals.items() if not math.isnan(v)}
            rises = key in ("nll_rise", "nll_incorrect_rise")  # a rise from a minimum is >= 0
            diff = paired(vals, dict.fromkeys(vals, 0.0), NONNEGATIVE if rises else UNBOUNDED, (0.0, 0.0), scale=1.0)
            rows.append(_row(what, diff, want, scale=1.0, units="nats"))
        claims.append(
            Claim(
                4,
                "CE's test NLL rises after the lr drop because of misclassified samples, while their "
                "entropy keeps falling",
                rows,
                _summary(rows),
            )
        )

        rows = []
        order = [label for label in ("FL-1", "FL-2", "FL-3") if label in dyn]
        chain = ["CE", *order]
        for hi_label, lo_label in zip(chain, chain[1:]):
            a = {s: d["nll_rise"] for s, d in dyn[lo_label].items() if d}
            b = {s: d["nll_rise"] for s, d in dyn[hi_label].items() if d}
            diff = paired(a, b, NONNEGATIVE, NONNEGATIVE, scale=1.0)
            rows.append(_row(f"NLL rise, {lo_label} - {hi_label} (nats)", diff, "negative", 1.0, "nats"))
        text = "Focal loss reduces that rise, ordered by gamma (FL-3 < FL-2 < FL-1 < CE)"
        claims.append(_measured(5, text, rows, "NLL rise, focal loss - CE (nats)", NEEDS_GAMMAS))

    rows = []
    for f in focal:
        early = paired(
            _per_seed(by[f], lambda r: weight_norms(r)[0]), _per_seed(ce, lambda r: weight_norms(r)[0]), scale=1.0
        )
        late = paired(
            _per_seed(by[f], lambda r: weight_norms(r)[1]), _per_seed(ce, lambda r: weight_norms(r)[1]), scale=1.0
        )
        rows.append(_row(f"{f} - CE, weight norm after epoch 1", early, "positive", 1.0, ""))
        rows.append(_row(f"{f} - CE, weight norm after the last epoch", late, "negative", 1.0, ""))
    text = "Last-layer weight norm: focal larger early, smaller than CE once CE over-fits"
    claims.append(_measured(6, text, rows, "focal loss - CE, weight norm", NEEDS_FOCAL))

    rows = []
    for ood_set in tables.ood_sets:
        for stage, words in (("before", "before TS"), ("after", "after TS")):

            def auroc(r, s=ood_set, st=stage):
                return (
                    r.ood["sets"][s]["detection"][st]["entropy"]["auroc"] if r.ood and s in r.ood["sets"] else math.nan
                )

            for f in focal:
                a = {k: v for k, v in _per_seed(by[f], auroc).items() if not math.isnan(v)}
                b = {k: v for k, v in _per_seed(ce, auroc).items() if not math.isnan(v)}
                diff = paired(a, b, UNIT_RANGE, UNIT_RANGE)
                rows.append(_row(f"{f} - CE, entropy AUROC on {ood_set}, {words}", diff, "positive"))
    text = "Focal loss has a higher OOD AUROC (softmax entropy) before and after TS"
    if rows or tables.ood_sets:  # no OOD sets scored: no claim 7
        claims.append(_measured(7, text, rows, "focal loss - CE, entropy AUROC", NEEDS_FOCAL))
    return claims


def claims_markdown(claims: Sequence[Claim], n_seeds: int) -> str:
    lines = [
        "| # | claim | measured (mean difference over seeds, 95% interval) | verdict |",
        "|---|---|---|---|",
    ]
    for c in claims:
        first = True
        for r in c.rows:
            if r["verdict"].startswith("not measurable"):
                lines.append(
                    f"| {c.number if first else ''} | {c.text if first else ''} | {r['what']} | {r['verdict']} |"
                )
                first = False
                continue
            unit = f" {r['units']}" if r["units"] else ""
            f = "+.3f" if r["units"] == "nats" else "+.2f"
            none = math.isnan(r["low"])
            ci = "" if none else f" [{r['low']:{f}}, {r['high']:{f}}]"
            n = f"n={r['n']}, no interval" if none and r["n"] > 0 else f"n={r['n']}"
            lines.append(
                f"| {c.number if first else ''} | {c.text if first else ''} | {r['what']}: {r['mean']:{f}}{unit}{ci} "
                f"({n}) | {r['verdict']} |"
            )
            first = False
        lines.append(f"| | | **claim {c.number} overall** | **{c.summary}** |")
    return "\n".join(lines)


# -- the results page --------------------------------------------------------------------------------------
#: A run's files an export copies as they are (names, as strings).
SUMMARY_FILES = (CONFIG.name, REPORT.name, LOG.name)


EXPORT_FILES = (*SUMMARY_FILES, OOD.name)
PAGE_FILES = ("claims.md", "claims.csv", "table.csv")
_FIGURES = ("fig2_nll_entropy.png", "fig3_test_nll.png", "fig4_g.png", "fig5_weight_norm.png", "fig6_error_bars.png")
_SEED_FOLDER = re.compile(r"seed-?[0-9]+")


def _export_contents(dest: Path) -> tuple[list[Path], list[Path]]:
    """``(own, other)``: the files under ``dest`` an export writes (``<dataset>/<model>/<loss>/seed<N>/`` +
    one of :data:`EXPORT_FILES`, or an interrupted write's temporary file there), and everything else (any
    other file, folder layout or link), which an export never removes."""
    if not dest.exists() and not dest.is_symlink():
        return [], []
    if dest.is_symlink() or not dest.is_dir():
        return [], [dest]
    own, other = [], []
    for root, dirs, files in os.walk(dest):
        here = Path(root)
        depth = len(here.relative_to(dest).parts)
        for d in list(dirs):
            if (here / d).is_symlink() or depth >= 4:
                other.append(here / d)
                dirs.remove(d)
        for name in files:
            path = here / name
            rel = path.relative_to(dest).parts
            ours = len(rel) == 5 and _SEED_FOLDER.fullmatch(rel[3]) and (name in EXPORT_FILES or is_temp_file(name))
            (own if ours and not path.is_symlink() else other).append(path)
    return sorted(own), sorted(other)


def _check_destination(tables: Tables, dest: Path, *, sources: Sequence[Path] = (), overwrite: bool) -> list[Path]:
    """Refuse an export into ``dest`` that could lose anything; returns the earlier export's files to replace.

    Raises:
        InputError: ``dest`` holds or lies inside a run read (or a path given); it holds files an export does
            not write (never removed, not even with ``overwrite``); or it holds an earlier export and
            ``overwrite`` is not set.
    """
    target = dest.resolve()
    read = [r.path for runs in tables.groups.values() for r in runs] + list(sources)
    for path in read:
        where = Path(path).resolve()
        if where == target or target in where.parents or where in target.parents:
            raise InputError(
                f"the export folder {dest} would hold or lie inside {path}, which is read: choose another --out "
                "(nothing was changed)"
            )
    own, other = _export_contents(dest)
    if other:
        shown = ", ".join(str(p) for p in other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
        raise InputError(
            f"{dest} holds files that an export of run summaries does not write ({shown}); they are left alone: "
            "choose another --out (nothing was changed)"
        )
    if own and not overwrite:
        raise InputError(
            f"{dest} holds an earlier export ({len(own)} files); pass --overwrite to replace it, or choose another "
            "--out (nothing was changed)"
        )
    return own


def _remove_export(dest: Path, files: Sequence[Path]) -> None:
    """Remove an earlier export's ``files`` (see :func:`_export_contents`) and the folders they leave empty."""
    for path in files:
        path.unlink(missing_ok=True)
    for folder in sorted({p.parent for p in files} | {q for p in files for q in p.parents}, reverse=True):
        if folder == dest or dest in folder.parents:
            with contextlib.suppress(OSError):  # not empty: something else is in it, keep it
                folder.rmdir()


def export_summaries(tables: Tables, dest, *, overwrite: bool = False, sources: Sequence[Path] = ()) -> list:
    """Copy each run's small files (config, report, log, and ood.json with the entropy ROC curves only) to
    ``dest/<dataset>/<model>/<loss>/seed<N>``: enough to rebuild every table and figure of the page.

    ``dest`` must be new or empty, or hold an earlier export (replaced with ``overwrite``: its own files
    only, so runs of an earlier export never leak in). It never holds or lies inside a run read or a path in
    ``sources``.

    Raises:
        InputError: see :func:`_check_destination`; two runs of one experiment with one seed.
    """
    dest = Path(dest)
    earlier = _check_destination(tables, dest, sources=sources, overwrite=overwrite)
    targets = []  # every target checked before anything is removed
    for (dataset, model, label), runs in tables.groups.items():
        slug = re.sub(r"[^A-Za-z0-9.=,+-]+", "_", ascii_label(label)).strip("_")
        for r in runs:
            target = dest / dataset / model / slug / f"seed{r.seed}"
            if target in (t for t, _ in targets):
                raise InputError(f"two runs of {dataset}/{model} {label} have seed {r.seed}; give one run per seed")
            targets.append((target, r))
    _remove_export(dest, earlier)
    out = []
    for target, r in targets:
        for name in SUMMARY_FILES:
            atomic_write_text(target / name, (r.path / name).read_text())
        if r.ood:
            ood = json.loads(json.dumps(r.ood))
            for entry in ood["sets"].values():
                entry["roc"] = {"entropy": entry["roc"]["entropy"]} if "roc" in entry else {}
            atomic_write_text(target / OOD, json.dumps(ood, indent=1) + "\n")
        out.append(target)
    return out


def _figures(tables: Tables, out) -> list[tuple[str, str]]:
    """The paper's Figs. 2-7 from the (exported) runs; returns ``(file, caption)`` pairs."""
    by = _by_label(tables)

    def first_seed(labels):
        runs = [min(by[label], key=lambda r: r.seed) for label in labels if label in by]
        return curves_of(read_runs([r.path for r in runs], [r.label for r in runs]))

    figures = []
    made = [
        (
            "fig2_nll_entropy.png",
            nll_entropy_figure(first_seed(["CE", "FL-3"])),
            "Fig. 2: NLL and entropy of correctly / incorrectly classified training and test samples "
            "(CE and FL-3, seed 1)",
        ),
        (
            "fig3_test_nll.png",
            nll_over_epochs_figure(first_seed(["CE", "FL-1", "FL-2", "FL-3"])),
            "Fig. 3: test NLL per epoch, CE and focal loss with gamma 1, 2, 3 (seed 1)",
        ),
        (
            "fig5_weight_norm.png",
            weight_norm_figure(first_seed(["CE", "FL-3", "FLSD-53"])),
            "Fig. 5: the last linear layer's weight norm per epoch (seed 1)",
        ),
        (
            "fig6_error_bars.png",
            fig6(tables),
            "Fig. 6: ECE, AdaECE and Classwise-ECE per loss with 95% intervals over seeds",
        ),
    ]
    p, values, thresholds, _ = g_table()
    made.insert(
        2,
        (
            "fig4_g.png",
            g_figure(p, values, thresholds),
            "Fig. 4: g(p, gamma), the ratio of the focal to the CE last-layer gradient",
        ),
    )
    for s in tables.ood_sets:
        made.append(
            (
                fig7_name(s),
                fig7(tables, s),
                f"Fig. 7: ROC curves of the softmax entropy, test split vs {s} (seed 1)",
            )
        )
    for name, fig, caption in made:
        save_figure(fig, out / name)
        figures.append((name, caption))
    return figures


def write_page(
    patterns: Sequence[str], out, *, title: str = "The paper's claims at CPU scale", overwrite: bool = False
) -> dict[str, Any]:
    """Export the runs' summaries to ``out/runs``, rebuild every number from them, and write ``out/claims.md``
    (the page), ``out/claims.csv``, ``out/table.csv`` and the figures. Returns the pieces, with ``skipped``:
    one line per path or run left out (a damaged ``config.json`` / ``report.json``, an unfinished run).

    ``out`` must not hold a page yet, or hold an earlier page (its ``runs/`` export beside it) and
    ``overwrite`` be set: then the earlier export's own files are replaced; nothing else is ever removed.

    Raises:
        InputError: ``out/runs`` would hold or lie inside a run read; it holds files an export does not write;
            ``out`` holds page files (``claims.md``, ``table.csv``, ...) with no earlier export beside them; or
            an earlier page without ``overwrite`` (all checked before anything is written).
    """
    out = Path(out)
    source = build(patterns, bootstrap=False)
    given = [Path(m) for pattern in patterns for m in (glob.glob(pattern) or [pattern]) if Path(m).exists()]
    earlier = _check_destination(source, out / "runs", sources=given, overwrite=True)
    names = [*PAGE_FILES, *_FIGURES, *(fig7_name(s) for s in source.ood_sets)]
    present = [name for name in names if (out / name).exists()]
    if present and not earlier:
        raise InputError(
            f"{out} holds {', '.join(present)}, which the claims page would replace, but no earlier export "
            f"({out / 'runs'}) beside them: they are not a page of focalcal claims; choose another --out "
            "(nothing was changed)"
        )
    if (present or earlier) and not overwrite:
        raise InputError(
            f"{out} holds an earlier claims page ({', '.join([*present[:3], 'runs/'] if earlier else present[:3])}"
            "); pass --overwrite to replace it, or choose another --out (nothing was changed)"
        )
    evaluate_claims(source)  # its errors (no CE runs, several settings) before anything is written
    export_summaries(source, out / "runs", overwrite=overwrite, sources=given)
    tables = build([str(out / "runs")], bootstrap=False)  # every number below comes from the export
    claims = evaluate_claims(tables)
    figures = _figures(tables, out)
    ce = tables.groups[next(k for k in tables.groups if k[2] == "CE")][0]
    cfg = ce.config
    seeds = sorted({r.seed for runs in tables.groups.values() for r in runs})
    precision = ce.report.get("training_precision") or {}

    atomic_write_csv(out / "claims.csv", [{"claim": c.number, **r} for c in claims for r in c.rows])
    atomic_write_csv(out / "table.csv", csv_rows(tables))
    page = "\n".join(
        [
            f"# {title}",
            "",
            f"Losses: {', '.join(k[2] for k in tables.groups)}; seeds {', '.join(map(str, seeds))} "
            f"({len(seeds)} runs per loss). Regime (the `cpu` family, chosen by the rule in `docs/demo_budget.md`): "
            f"`{cfg['model']}` on {cfg.get('train_size') or 'all'} CIFAR-10 training images "
            f"({'with' if cfg.get('augment', True) else 'without'} augmentation), {cfg['epochs']} epochs, the paper's "
            f"schedule scaled, {cfg.get('val_size')} validation images for the temperature, the full test split; "
            f"trained in {'bfloat16 autocast' if precision.get('amp') else 'float32'} (chosen by measurement on this "
            "machine; evaluation is float32).",
            "",
            "Regenerate everything on this page with `make claims` (the sweep, then `focalcal claims`). The numbers "
            "come from the run summaries committed under `runs/` (config, log, report and OOD results of each run); "
            "`focalcal table docs/claims/runs` rebuilds the tables from them.",
            "",
            "## The claims",
            "",
            "Each row is a paired difference over the same seeds with its 95% t-interval over the seeds, clipped to "
            "the range the difference can take ([-100, 100] points for errors, calibration errors and AUROC; a rise "
            f"of the NLL from its minimum is >= 0); below {MIN_SEEDS} seeds there is no interval and no verdict. "
            "**holds**: the interval lies on the side the paper claims; **not shown**: it contains 0; **fails**: it "
            "lies on the other side; **not refuted**: a claim of no higher error (claim 3) whose interval contains 0. "
            "Calibration errors and AUROC in percentage points.",
            "",
            claims_markdown(claims, len(seeds)),
            "",
            markdown(tables),
            "## Figures",
            "",
            *[f"![{cap}]({name})\n\n*{cap}*\n" for name, cap in figures],
        ]
    )
    atomic_write_text(out / "claims.md", page)
    return {"tables": tables, "claims": claims, "figures": figures, "skipped": source.skipped}
