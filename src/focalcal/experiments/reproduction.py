"""The paper's text experiments reproduced, beside its published numbers (``docs/reproduction/text.md``).

:func:`write_text_page` exports the runs' summaries (config, log, report of each run) to ``OUT/text/``,
rebuilds every number from that export with :func:`focalcal.experiments.table.build` (the mean over seeds
with a 95% t-interval clipped to the quantity's range, none below 3 seeds), sets the paper's published
number (``focalcal/presets/published/text.yaml``: Table 1 and the error table of Mukhoti et al. 2020) beside
each cell it has, says whether it lies inside our interval, and measures the paper's text claims as paired
differences over seeds (:func:`focalcal.experiments.claims.paired`):

- 20 Newsgroups: focal loss (FL-3, FLSD-53) lowers ECE before temperature scaling, and is at least as good
  as cross-entropy after it;
- SST Binary: focal loss is worse than cross-entropy before temperature scaling and better after it.

On SST the paper's ECE uses the paper's confidence (max of the negative and positive probabilities of the
3-way softmax, not renormalised): its published ECE is compared with that column, which the SST modality
adds to every report (``test_extra.paper_confidence``); the standard columns use the renormalised binary
distribution.
"""

from __future__ import annotations

import glob
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..atomic import atomic_write_text
from ..errors import InputError
from ..metrics.intervals import NONNEGATIVE, UNIT_RANGE
from .claims import EXPORT_FILES, Diff, _check_destination, _per_seed, export_summaries, paired
from .table import METRICS, Cell, RunResult, Tables, build, metric_cell, t_cell, temperature_cell

PAGE = "text.md"
EXPORT = "text"
#: The published keys compared with our cells, and their column titles.
COMPARED = {
    "error": "Error %",
    "ece_before": "ECE % before TS",
    "ece_after": "ECE % after TS",
    "temperature": "T",
}


#: What the ``paper_text`` presets do differently from the paper, or decide where the paper is silent.
DEPARTURES = (
    "Departures from the paper:",
    "",
    "- Word vectors: GloVe 6B 50-d (the only copy reachable offline) instead of 6B 100-d (20 Newsgroups) and 840B "
    "300-d (SST), so the CNN's first convolution and the Tree-LSTM take 50 input features; the 6B vectors are "
    "lower-case, so SST's cased words are looked up lower-cased: a likely cause of our errors above the paper's. "
    "`--embeddings PATH` takes the paper's files.",
    "- Vocabulary: fitted on all documents, test included, as the paper did (`fit_on=all`; focalcal's default "
    "is the training split).",
    "- Seeds 1-3 (the authors' SST code set none); the paper reports one run per cell, so its number may lie "
    "outside our interval by seed noise alone.",
    "- Where the paper is silent we follow the authors' text code: FLSD-53 switches at p = 0.19 on 20 "
    "Newsgroups (0.2 kept on SST), FLSc-531 switches at epochs 14/35 of 50 and 3/7 of 25, MMCE's weight is 2 "
    "on 20 Newsgroups (they tried 2 and 8) and 1 on SST; label smoothing is summed over the batch on 20 "
    "Newsgroups.",
    "- 20 Newsgroups keeps its last partial batch of 122 documents (15,098 = 117 x 128 + 122), which the authors drop.",
    "- Training precision: each run trains in the precision focalcal measured fastest on its machine (the setup "
    "lines say which); the paper trained in float32. The effect of bfloat16 on these text numbers is not "
    "measured here (`--no-amp` trains in float32); evaluation is float32.",
    "- SST's out-of-vocabulary word vectors are drawn once (seed 0) and are the same in every run (the "
    "authors' code set no seed): our intervals leave out that source of variation.",
    "- SST batches: a batch's loss is divided by the trees it holds (the authors divide by 25 always, which "
    "weighs the last batch of 20 trees by 0.8). MMCE is added once per tree with weight 1 (the authors' SST "
    "loss has no weight).",
    "- MMCE (both data sets) is normalised once, as Kumar et al. define it. The authors' weighted MMCE code "
    "divides each kernel block by its size twice (a mean, then again by m², w² or mw), which shrinks the "
    "term, the more so the more samples it is computed over: at the same weight ours regularises more "
    "strongly than the published runs.",
)


@dataclass(frozen=True)
class Published:
    """A published number (in %, or the temperature) and whether it is uncertain (a trailing ``?``)."""

    value: float
    uncertain: bool

    def __str__(self) -> str:
        return f"{self.value:g}" + ("?" if self.uncertain else "")


def published_numbers() -> dict[str, dict[str, Any]]:
    """``dataset -> {"title", "model", "losses": {label: {key: Published}}}`` from the shipped YAML."""
    text = resources.files("focalcal.presets").joinpath("published", "text.yaml").read_text()
    out: dict[str, dict[str, Any]] = {}
    for dataset, entry in yaml.safe_load(text).items():
        losses = {}
        for label, values in entry["losses"].items():
            losses[label] = {k: Published(float(str(v).rstrip("?")), str(v).endswith("?")) for k, v in values.items()}
        out[dataset] = {"title": entry["title"], "model": entry["model"], "losses": losses}
    return out


def paper_label(label: str) -> str:
    """The paper's column name of one of our loss labels: options shown in brackets are dropped (our SST
    MMCE is ``MMCE (λ=1)``, the paper's column ``MMCE``)."""
    return label.split(" (")[0].split(" [")[0]


def _extra_cell(runs: Sequence[RunResult], stage: str) -> Cell | None:
    """The paper's-confidence ECE (SST) over ``runs``, or None where the reports do not have it."""
    values = [r.report.get("test_extra", {}).get("paper_confidence", {}).get(stage, {}).get("ece") for r in runs]
    return None if any(v is None for v in values) else t_cell(values)


def _extra_temperature(runs: Sequence[RunResult]) -> Cell | None:
    """The temperature of the paper's confidence (SST: fitted on it by the paper's grid), or None."""
    values = [r.report.get("test_extra", {}).get("paper_confidence", {}).get("temperature") for r in runs]
    return None if any(v is None for v in values) else t_cell(values, NONNEGATIVE, 1.0)


def _compared_cells(runs: Sequence[RunResult]) -> dict[str, Cell | None]:
    """Our cell for each published key: on SST the ECE and T columns are those of the paper's confidence."""
    before, after = _extra_cell(runs, "before"), _extra_cell(runs, "after")
    return {
        "error": metric_cell(runs, "error", "before", bootstrap=False),
        "ece_before": before or metric_cell(runs, "ece", "before", bootstrap=False),
        "ece_after": after or metric_cell(runs, "ece", "after", bootstrap=False),
        "temperature": _extra_temperature(runs) or temperature_cell(runs),
    }


def inside(cell: Cell | None, published: Published | None, scale: float) -> bool | None:
    """Whether ``published`` lies in our 95% interval (None: no interval, or no published number)."""
    if cell is None or published is None or cell.low is None or cell.high is None:
        return None
    return cell.low * scale - 1e-9 <= published.value <= cell.high * scale + 1e-9


def _fmt(cell: Cell | None, scale: float, digits: int = 2) -> str:
    if cell is None:
        return "-"
    v = f"{cell.value * scale:.{digits}f}"
    return v if cell.low is None else f"{v} [{cell.low * scale:.{digits}f}, {cell.high * scale:.{digits}f}]"


def _mark(flag: bool | None) -> str:
    return {True: " ✓", False: " ✗", None: ""}[flag]


def dataset_rows(tables: Tables, dataset: str, published: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per loss of ``dataset``: our cells, the published numbers and whether each is inside."""
    rows = []
    for (ds, model, label), runs in tables.groups.items():
        if ds != dataset:
            continue
        paper = published.get("losses", {}).get(paper_label(label), {})
        ours = _compared_cells(runs)
        row: dict[str, Any] = {"loss": label, "model": model, "n": len(runs), "seeds": [r.seed for r in runs]}
        for key in COMPARED:
            scale = 1.0 if key == "temperature" else 100.0
            row[key] = ours[key]
            row[f"{key}_paper"] = paper.get(key)
            row[f"{key}_inside"] = inside(ours[key], paper.get(key), scale)
        for key, _, _ in METRICS[2:]:  # AdaECE, Classwise-ECE, NLL: the paper's appendix, not compared
            for stage in ("before", "after"):
                row[f"{key}_{stage}"] = metric_cell(runs, key, stage, bootstrap=False)
        row["renormalised_ece"] = [metric_cell(runs, "ece", s, bootstrap=False) for s in ("before", "after")]
        row["paper_confidence"] = _extra_cell(runs, "before") is not None
        row["renormalised_temperature"] = temperature_cell(runs)
        rows.append(row)
    return rows


def _by_label(tables: Tables, dataset: str) -> dict[str, list[RunResult]]:
    return {paper_label(k[2]): runs for k, runs in tables.groups.items() if k[0] == dataset}


def _ece(stage: str, paper_confidence: bool):
    def get(r: RunResult) -> float:
        if paper_confidence:
            return r.report["test_extra"]["paper_confidence"][stage]["ece"]
        return r.report["test"][stage]["ece"]

    return get


@dataclass
class TextClaim:
    """One of the paper's text claims: ``rows`` of paired differences (focal minus CE) with verdicts."""

    dataset: str
    text: str
    rows: list[dict[str, Any]]


def _claim_row(what: str, d: Diff, want: str, *, not_worse: bool = False) -> dict[str, Any]:
    verdict = d.verdict(want)
    if not_worse:  # "at least as good": only an interval on the wrong side refutes it
        verdict = {
            "holds": "holds (better)",
            "not shown": "not refuted (no difference shown)",
            "fails": "fails (worse)",
        }.get(verdict, verdict)
    return {
        "difference": what,
        "mean": d.mean * 100,
        "low": d.low * 100,
        "high": d.high * 100,
        "n": d.n,
        "verdict": verdict,
        "interval": d.note,
    }


def text_claims(tables: Tables) -> list[TextClaim]:
    """The paper's text claims on the runs there are (a claim whose losses were not run is left out)."""
    out = []
    ng = _by_label(tables, "20newsgroups")
    if "CE" in ng:
        focal = [f for f in ("FL-3", "FLSD-53") if f in ng]
        for stage, want, text, not_worse in (
            ("before", "negative", "focal loss lowers ECE before temperature scaling", False),
            ("after", "negative", "focal loss is at least as good as CE after temperature scaling", True),
        ):
            rows = [
                _claim_row(
                    f"{f} - CE, ECE % {stage} TS",
                    paired(
                        _per_seed(ng[f], _ece(stage, False)),
                        _per_seed(ng["CE"], _ece(stage, False)),
                        UNIT_RANGE,
                        UNIT_RANGE,
                    ),
                    want,
                    not_worse=not_worse,
                )
                for f in focal
            ]
            if rows:
                out.append(TextClaim("20newsgroups", text, rows))
    sst = _by_label(tables, "sst2")
    if "CE" in sst:
        focal = [f for f in ("FL-3", "FLSD-53") if f in sst]
        has_paper = all("paper_confidence" in r.report.get("test_extra", {}) for runs in sst.values() for r in runs)
        for stage, want, text in (
            ("before", "positive", "focal loss is worse (higher ECE) than CE before temperature scaling"),
            ("after", "negative", "focal loss is better (lower ECE) than CE after temperature scaling"),
        ):
            rows = []
            for f in focal:
                for paper_conf in (True, False) if has_paper else (False,):
                    which = "the paper's confidence" if paper_conf else "renormalised"
                    d = paired(
                        _per_seed(sst[f], _ece(stage, paper_conf)),
                        _per_seed(sst["CE"], _ece(stage, paper_conf)),
                        UNIT_RANGE,
                        UNIT_RANGE,
                    )
                    rows.append(_claim_row(f"{f} - CE, ECE % {stage} TS ({which})", d, want))
            if rows:
                out.append(TextClaim("sst2", text, rows))
    return out


def _table_markdown(rows: list[dict[str, Any]], extra_note: bool) -> str:
    head = ["Loss", "n", *COMPARED.values()]
    if extra_note:
        head += ["ECE % renormalised before / after", "T renormalised"]
    head += ["AdaECE % before / after", "Classwise-ECE % before / after", "NLL before / after"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["loss"], str(r["n"])]
        for key in COMPARED:
            scale = 1.0 if key == "temperature" else 100.0
            paper = r[f"{key}_paper"]
            shown = _fmt(r[key], scale)
            if paper is not None:
                shown += f" · paper {paper}{_mark(r[f'{key}_inside'])}"
            cells.append(shown)
        if extra_note:
            cells.append(" / ".join(_fmt(c, 100.0) for c in r["renormalised_ece"]))
            cells.append(_fmt(r["renormalised_temperature"], 1.0))
        for key, scale, digits in (("adaptive_ece", 100.0, 2), ("classwise_ece", 100.0, 2), ("nll", 1.0, 3)):
            cells.append(" / ".join(_fmt(r[f"{key}_{s}"], scale, digits) for s in ("before", "after")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _precision(runs: Sequence[RunResult]) -> str:
    """How the runs trained (their reports' ``training_precision``): float32 as the paper, bfloat16 autocast,
    a mix, or unrecorded."""
    amp = {(r.report.get("training_precision") or {}).get("amp") for r in runs}
    if None in amp:
        return "trained in an unrecorded precision (some or all runs)"
    if amp == {False}:
        return "trained in float32 (as the paper)"
    mixed = "" if amp == {True} else " (some runs; the others in float32)"
    return (
        f"trained under bfloat16 autocast{mixed}, the precision focalcal measured fastest on the training machine "
        "(the paper: float32; `--no-amp` trains in float32), evaluated in float32"
    )


def _setup_line(runs: Sequence[RunResult]) -> str:
    r = runs[0]
    inputs = r.report.get("inputs", {})
    cfg = r.config
    return (
        f"`{cfg.get('model')}`, {cfg.get('optimizer')} lr {cfg.get('lr')}, batch {cfg.get('batch_size')}, "
        f"{cfg.get('epochs')} epochs, the epoch with the best validation accuracy kept, {_precision(runs)}; "
        "word vectors "
        f"`{inputs.get('word_vectors')}` ({inputs.get('embedding_dim')} dimensions; {inputs.get('oov_words')} of "
        f"{inputs.get('vocabulary_size')} vocabulary words out of vocabulary, initialised "
        f"{inputs.get('oov_init', 'as zeros')}); vocabulary fitted on {inputs.get('tokenizer_fit_on')} documents; "
        f"{r.report.get('n_train')} / {r.report.get('n_val')} / {r.report.get('n_test')} train / validation / test "
        f"{r.report.get('samples', 'samples')}; temperature by the {r.report.get('ts_method')} method, "
        f"{r.report.get('n_bins')} {r.report.get('binning', 'bins')}"
    )


def text_page(tables: Tables, *, not_run: dict[str, str] | None = None) -> str:
    """The Markdown of ``docs/reproduction/text.md`` (``not_run``: dataset -> why it has no runs here)."""
    published = published_numbers()
    parts = [
        "# The paper's text experiments, reproduced on a CPU",
        "",
        "Our numbers: the mean over seeds with a 95% t-interval over the seeds, clipped to the quantity's range "
        "(no interval below 3 seeds), on the test split. Beside each, the paper's published number (Table 1 "
        "and the error table; `?`: uncertain, not confirmed by a second source) and whether it lies inside our "
        "interval (✓ inside, ✗ outside, nothing: no interval). Errors and ECEs are in %, differences in "
        "percentage points, NLL in nats. The intervals cover seed-to-seed variation only: every run has the same "
        "split and test set. With 3 seeds the interval's half-width is 4.30 "
        "standard errors, so ✓ says our runs do not contradict the published number, not that they confirm it; "
        'a claim that only needs "at least as good" is "not refuted" when no difference is shown. '
        "AdaECE, Classwise-ECE and NLL are the paper's "
        "appendix numbers, which are not compared here. Regenerate this page with `make reproduce-text` "
        "(resumable); the run summaries it is built from are committed under `text/` "
        "(`focalcal table docs/reproduction/text` rebuilds the tables).",
        "",
        *DEPARTURES,
        "",
    ]
    for dataset, entry in published.items():
        parts += [f"## {entry['title']} ({entry['model']})", ""]
        rows = dataset_rows(tables, dataset, entry)
        if not rows:
            parts += [(not_run or {}).get(dataset, "Not run yet."), ""]
            continue
        runs = [r for k, rs in tables.groups.items() if k[0] == dataset for r in rs]
        parts += [f"Setup: {_setup_line(runs)}.", ""]
        paper_conf = any(r["paper_confidence"] for r in rows)
        if paper_conf:
            parts += [
                "The ECE and T columns use the paper's confidence (max of the negative and positive probabilities "
                "of the 3-way softmax, not renormalised), as the published numbers do, with its own temperature "
                "fitted as the paper's (the grid 0.1..10.0 minimising that confidence's validation ECE). The "
                "renormalised columns are the ECE and temperature of the proper binary distribution (softmax "
                "over the negative and positive logits), on which AdaECE, Classwise-ECE and NLL are computed too.",
                "",
            ]
        parts += [_table_markdown(rows, paper_conf), ""]
        missing = [loss for loss in entry.get("losses", {}) if loss not in {paper_label(r["loss"]) for r in rows}]
        if missing:
            parts += [f"Not run yet: {', '.join(missing)} (`make reproduce-text` runs them; resumable).", ""]
    claims = text_claims(tables)
    parts += [
        "## The paper's text claims",
        "",
        "Each difference is paired by seed (a seed gives both losses the same initialisation and batch order): "
        "the mean of the per-seed differences with a 95% t-interval over them. The claim holds when the interval "
        'lies on its side of 0, fails when it lies on the other side, and is "not shown" when it contains 0. '
        "No correction is made for the number of comparisons.",
        "",
    ]
    if not claims:
        parts += ["No claim can be measured yet: it needs CE and a focal loss on the same seeds.", ""]
    for c in claims:
        parts += [f"**{published[c.dataset]['title']}: {c.text}.**", ""]
        parts += ["| difference (points) | mean | 95% interval | seeds | verdict |", "|---|---|---|---|---|"]
        for r in c.rows:
            ci = "-" if math.isnan(r["low"]) else f"[{r['low']:+.2f}, {r['high']:+.2f}]"
            parts.append(f"| {r['difference']} | {r['mean']:+.2f} | {ci} | {r['n']} | {r['verdict']} |")
        parts.append("")
    return "\n".join(parts)


def _earlier_runs_to_keep(export: Path, source: Tables, into: Path) -> tuple[list[str], list[str]]:
    """Copy to ``into`` the runs of an earlier ``export`` whose experiment (data set, model and loss) ``source``
    has no run of at all; returns ``(kept, skipped)``: ``dataset/model/loss seedN`` lines, and the earlier runs
    that could not be read (left out, never silently). An experiment with runs in ``source`` takes its seeds
    from there only: old and new seeds of one experiment are never mixed."""
    try:
        earlier = build([str(export)], bootstrap=False)
    except InputError as exc:  # an export with no evaluated run keeps nothing
        return [], [f"the earlier export: {exc}"]
    given = {(r.dataset, r.model, r.label) for runs in source.groups.values() for r in runs}
    kept = []
    for runs in earlier.groups.values():
        for r in runs:
            if (r.dataset, r.model, r.label) in given:
                continue
            target = into / r.path.relative_to(export)
            target.mkdir(parents=True)
            for name in EXPORT_FILES:
                if (r.path / name).is_file():
                    shutil.copyfile(r.path / name, target / name)
            kept.append(f"{r.dataset}/{r.model}/{r.label} seed{r.seed}")
    return kept, [f"the earlier export: {line}" for line in earlier.skipped]


def write_text_page(
    patterns: Sequence[str],
    out,
    *,
    overwrite: bool = False,
    not_run: dict[str, str] | None = None,
    keep_earlier: bool = True,
) -> dict[str, Any]:
    """Export the runs' summaries to ``out/text/``, rebuild every number from them, and write
    ``out/text.md``. Returns ``{"tables", "claims", "skipped", "kept"}``.

    The runs of an earlier export whose experiment (data set, model and loss) ``patterns`` hold no run of are
    kept (``kept`` names them; an earlier run that cannot be read is named in ``skipped``), so a page
    regenerated from part of the runs -- one data set, or a fresh clone with new runs only -- never loses the
    committed rest; an experiment with runs in ``patterns`` is taken from there alone, so old and new seeds
    are never mixed. ``keep_earlier=False`` builds the page from ``patterns`` alone. Nothing is removed but an
    earlier export of this page (with ``overwrite``); the export never holds or lies inside a run it reads.

    Raises:
        InputError: no evaluated run; ``out/text`` holds files an export does not write, or would hold a run
            read; ``out/text.md`` exists without an earlier export beside it; an earlier page without
            ``overwrite`` (all checked before anything is written).
    """
    out = Path(out)
    source = build(patterns, bootstrap=False)
    given = [Path(m) for pattern in patterns for m in (glob.glob(pattern) or [pattern]) if Path(m).exists()]
    earlier = _check_destination(source, out / EXPORT, sources=given, overwrite=True)
    page = out / PAGE
    if page.exists() and not earlier:
        raise InputError(
            f"{page} exists but no earlier export ({out / EXPORT}) is beside it: it is not a page of this "
            "command; choose another --out (nothing was changed)"
        )
    if (page.exists() or earlier) and not overwrite:
        raise InputError(f"{out} holds an earlier text page; pass --overwrite to replace it (nothing was changed)")
    kept, skipped = [], list(source.skipped)
    with tempfile.TemporaryDirectory(prefix="focalcal-text-") as tmp:
        if keep_earlier and earlier:
            kept, unread = _earlier_runs_to_keep(out / EXPORT, source, Path(tmp))
            skipped += unread
        if kept:
            source = build([*patterns, tmp], bootstrap=False)
        export_summaries(source, out / EXPORT, overwrite=overwrite, sources=given)
    tables = build([str(out / EXPORT)], bootstrap=False)  # every number on the page comes from the export
    atomic_write_text(page, text_page(tables, not_run=not_run))
    return {"tables": tables, "claims": text_claims(tables), "skipped": skipped, "kept": kept}
