"""One owner per concern: every CSV goes through ``atomic_write_csv``; the run folder's file names are spelled
only in ``engine/runfolder.py``."""

from __future__ import annotations

import ast
import csv
import math
import re
from pathlib import Path

import pytest

import focalcal
from focalcal.atomic import atomic_write_csv
from focalcal.engine import runfolder
from focalcal.engine.runfolder import RunFolder

SRC = Path(focalcal.__file__).parent


# -- the CSV writer ------------------------------------------------------------------------------------------
def test_csv_round_trips_through_dict_reader(tmp_path):
    rows = [
        {"name": "a, b", "value": 0.1 + 0.2, "n": 3},
        {"name": 'say "hi"', "value": None, "extra": "two\nlines"},
        {"value": float("nan"), "n": -1, "name": "été"},
    ]
    path = atomic_write_csv(tmp_path / "sub" / "t.csv", rows)
    assert path == tmp_path / "sub" / "t.csv"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        back = list(reader)
    assert reader.fieldnames == ["name", "value", "n", "extra"]  # first appearance
    assert back == [
        {"name": "a, b", "value": repr(0.1 + 0.2), "n": "3", "extra": ""},
        {"name": 'say "hi"', "value": "", "n": "", "extra": "two\nlines"},
        {"name": "été", "value": "", "n": "-1", "extra": ""},
    ]
    assert float(back[0]["value"]) == 0.1 + 0.2  # full precision


def test_csv_quotes_only_what_needs_it_with_crlf_lines(tmp_path):
    path = atomic_write_csv(tmp_path / "t.csv", [{"a": "x,y", "b": 'q"q', "c": "l1\nl2", "d": "plain", "e": True}])
    # by hand: RFC 4180 quoting (quotes doubled), \r\n after each record, a newline inside a field kept as is
    assert path.read_bytes() == b'a,b,c,d,e\r\n"x,y","q""q","l1\nl2",plain,True\r\n'


def test_csv_columns_choose_and_order(tmp_path):
    path = atomic_write_csv(tmp_path / "t.csv", iter([{"a": 1, "b": 2, "c": 3}, {"c": 4}]), columns=["c", "a"])
    assert path.read_text().splitlines() == ["c,a", "3,1", "4,"]


class _Unprintable:
    def __str__(self):
        raise RuntimeError("cannot format this value")


def _rows_failing_after(n: int):
    for i in range(n):
        yield {"i": i}
    raise RuntimeError("the row source broke")


@pytest.mark.parametrize(
    "rows",
    [_rows_failing_after(3), [{"i": 0}, {"i": _Unprintable()}]],
    ids=["row-iterator-fails", "value-fails-to-format"],
)
def test_csv_write_that_fails_keeps_the_old_file(tmp_path, rows):
    path = tmp_path / "t.csv"
    path.write_bytes(b"old,file\r\n1,2\r\n")
    with pytest.raises(RuntimeError):
        atomic_write_csv(path, rows)
    assert path.read_bytes() == b"old,file\r\n1,2\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # no temporary file left
    with pytest.raises(RuntimeError):
        atomic_write_csv(tmp_path / "new.csv", _rows_failing_after(2))
    assert not (tmp_path / "new.csv").exists()


def test_plot_csv_is_written_atomically(tmp_path):
    """``focalcal plot`` writes each figure's data beside it; a write that fails must not tear the old table."""
    from matplotlib.figure import Figure

    from focalcal.cli.plot import _save

    old = b"epoch,test_nll\r\n1,2.5\r\n"
    (tmp_path / "fig.csv").write_bytes(old)
    with pytest.raises(RuntimeError):
        _save(Figure(), tmp_path, "fig", [{"epoch": 1, "test_nll": 2.0}, {"epoch": 2, "test_nll": _Unprintable()}])
    assert (tmp_path / "fig.csv").read_bytes() == old
    assert _save(Figure(), tmp_path, "fig", [{"epoch": 1, "test_nll": math.nan}])[-1] == tmp_path / "fig.csv"
    assert (tmp_path / "fig.csv").read_bytes() == b"epoch,test_nll\r\n1,\r\n"


def test_log_csv_has_the_format_of_every_other_csv(tmp_path):
    """``log.csv``: scalar fields only, ``None`` and NaN as empty cells like every other CSV focalcal writes."""
    run = RunFolder(tmp_path)
    with run.lock():
        run.append_log({"epoch": 1, "train_loss": 0.5, "per_class": [0.1, 0.9], "note": "a,b"})
        run.append_log({"epoch": 2, "train_loss": math.nan, "test_nll": None, "bins": {"n": 2}})
    assert (tmp_path / runfolder.LOG_CSV).read_bytes() == (
        b'epoch,train_loss,note,test_nll\r\n1,0.5,"a,b",\r\n2,,,\r\n'  # by hand
    )


# -- the run folder's file names -------------------------------------------------------------------------------
#: Files named like a run's that belong to another command's own output folder, never a run folder's.
NOT_A_RUN = {
    "calibration/compare.py": {"reliability_before.png", "reliability_after.png"},  # `focalcal calibrate --out`
}


def _run_file_name_pattern() -> re.Pattern:
    """The file names :mod:`focalcal.engine.runfolder` defines: its path constants that name files (with a
    dot: ``config.json``, ``last.pt``, ``.lock``) and its derived-file globs (``reliability_*.png``)."""
    names = {v.name for v in vars(runfolder).values() if isinstance(v, Path) and "." in v.name}
    assert {"config.json", "report.json", "ood.json", "logits.pt", "final.pt", "last.pt", "log.jsonl"} <= names
    alternatives = [re.escape(n) for n in sorted(names)]
    alternatives += [re.escape(g).replace(r"\*", r"[^\s/'\"]*") for g in runfolder.DERIVED_GLOBS if "*" in g]
    return re.compile(r"(?<![\w.-])(?:" + "|".join(alternatives) + r")(?!\w)")


def _literal_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal of the code except docstrings, with its line; an f-string's text with ``{}`` for
    each replacement field (the literals inside a field are visited on their own)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    f_string_parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            found.append((node.lineno, text))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings | f_string_parts
        ):
            found.append((node.lineno, node.value))
    return found


def _spelled_run_file_names(source: str, module: str) -> list[str]:
    pattern = _run_file_name_pattern()
    allowed = NOT_A_RUN.get(module, set())
    return [
        f"{module}:{line}: {name!r}"
        for line, text in _literal_strings(ast.parse(source))
        for name in pattern.findall(text)
        if name not in allowed
    ]


#: The lint's own check: names in code (f-strings too) are found, docstrings and look-alike names are not.
_SAMPLE = '''
"""A module docstring naming report.json may stay."""
CONFIG_NAME = "config.json"
def f(run, stage, score):
    """Reads ``logits.pt``."""
    print(f"{run / 'final.pt'} missing; see {run}/reliability_{stage}.png and ood_roc_{score}.png")
    return run / "checkpoints" / "last.pt", ".sweep.lock", "my_report.json", "report.jsonl", "demo.json"
'''


def test_no_module_but_the_run_folder_spells_a_run_file_name():
    found = [s.split(": ", 1)[1] for s in _spelled_run_file_names(_SAMPLE, "m.py")]
    assert sorted(found) == sorted(
        ["'config.json'", "'final.pt'", "'reliability_{}.png'", "'ood_roc_{}.png'", "'last.pt'"]
    )
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        if module != "engine/runfolder.py":
            offenders += _spelled_run_file_names(path.read_text(encoding="utf-8"), module)
    assert not offenders, "use the constants of focalcal.engine.runfolder instead:\n" + "\n".join(offenders)
