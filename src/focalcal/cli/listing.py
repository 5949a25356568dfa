"""``focalcal list``: datasets, models, losses, calibrators, presets and experiment families."""

from __future__ import annotations

import argparse

from ..calibration import CALIBRATORS
from ..data import DATASETS
from ..experiments.presets import (
    available_bases,
    available_families,
    describe_base,
    family_experiments,
    load_family,
)
from ..losses import LOSSES
from ..models import MODELS


def register(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("list", help="list datasets, models, losses, calibrators, presets and experiment families")
    ls.set_defaults(func=run)


def _section(title: str, rows: dict[str, str]) -> None:
    print(f"{title}:")
    for name, desc in rows.items():
        print(f"  {name:22s} {desc}")


def run(args: argparse.Namespace) -> int:
    _section(
        "datasets",
        {
            e.name: e.description
            + (f" [{e.meta['inputs']}]" if e.meta.get("inputs", "images") != "images" else "")
            + (f" (options: {', '.join(sorted(e.options))})" if e.options else "")
            for e in DATASETS.entries()
        },
    )
    _section("models", {**MODELS.describe(), **{p: "any classifier of that library" for p in MODELS.patterns()}})
    _section("losses", {e.name: f"[{e.display({})}] {e.description}" for e in LOSSES.entries()})
    _section("calibrators", {e.name: f"[{e.display({})}] {e.description}" for e in CALIBRATORS.entries()})
    _section(
        "presets (protocols; combine with --dataset/--model/--loss)", {b: describe_base(b) for b in available_bases()}
    )
    print("experiment families (preset <family>/<dataset>/<model>/<loss>; `focalcal sweep FAMILY`):")
    for fam in available_families():
        f = load_family(fam)
        n = len(family_experiments(fam))
        print(f"  {fam:22s} {n} experiments: {f.description}")
        for axis, values in f.axes.items():
            if isinstance(values, dict):  # per dataset (the text family: each data set has its own model)
                shown = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in values.items())
            else:
                shown = ", ".join(v if isinstance(v, str) else v.get("key", v["name"]) for v in values)
            print(f"  {'':22s}   {axis}: {shown}")
    return 0
