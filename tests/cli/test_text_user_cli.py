"""Training on text of one's own from the CLI: the ``text`` preset, the note when text trains on the image
defaults, warnings on the temperature, a data location that survives a change of directory, and ``list``."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from focalcal.cli.main import main
from focalcal.cli.train import temperature_notes, text_defaults_note
from focalcal.engine import TrainConfig

WORDS = {"a": ["apple", "pear", "plum", "fig"], "b": ["rock", "stone", "sand", "clay"]}


@pytest.fixture
def own_text(tmp_path, monkeypatch):
    """<tmp>/docs/{train,test}/{a,b}/*.txt whose words say the class, and a tiny GloVe file; cwd = tmp."""
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 14), ("test", 5)):
        for label, words in WORDS.items():
            folder = tmp_path / "docs" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                picks = torch.randint(0, 4, (6,), generator=g).tolist()
                (folder / f"{i}.txt").write_text(" ".join(words[k] for k in picks))
    vocab = [w for ws in WORDS.values() for w in ws]
    rows = [w + " " + " ".join(f"{v:.3f}" for v in torch.randn(8, generator=g).tolist()) for w in vocab]
    (tmp_path / "glove.txt").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


RUN = ["--embeddings", "glove.txt", "--val-size", "6", "--device", "cpu", "--no-progress", "--no-amp"]


def test_text_preset_trains_own_text_with_the_text_protocol_from_any_directory(own_text, capsys, monkeypatch):
    assert main(["train", "--preset", "text", "--data-dir", "docs", "--epochs", "3", *RUN, "--out", "run"]) == 0
    out = capsys.readouterr().out
    config = json.loads((own_text / "run" / "config.json").read_text())
    assert (config["optimizer"], config["lr"], config["select_epoch"]) == ("adam", 0.001, "best_val_acc")
    assert config["data_options"] == {"fit_on": "train"} and config["ts_method"] == "nll"
    assert config["data_dir"] == str(own_text / "docs")  # stored absolute: evaluate works from anywhere
    assert "note: no --preset" not in out
    assert "fitted on 6 validation samples: it is uncertain" in out
    elsewhere = own_text / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", str(own_text / "run")]) == 0


def test_a_runs_missing_data_location_says_where_it_came_from(own_text, capsys):
    assert main(["train", "--preset", "text", "--data-dir", "docs", "--epochs", "1", *RUN, "--out", "run"]) == 0
    (own_text / "docs").rename(own_text / "moved")
    capsys.readouterr()
    assert main(["evaluate", str(own_text / "run")]) == 2
    err = capsys.readouterr().err
    assert "is the one recorded in the run; give --data-dir" in err and "Traceback" not in err
    assert main(["evaluate", str(own_text / "run"), "--data-dir", "moved"]) == 0


def test_text_without_a_preset_trains_with_a_note_naming_the_image_defaults(own_text, capsys):
    argv = ["train", "--dataset", "textfolder", "--model", "gpcnn", "--data-dir", "docs", "--epochs", "1", *RUN]
    assert main([*argv, "--out", "run"]) == 0
    out = capsys.readouterr().out
    assert "note: no --preset: textfolder trains with the image protocol's defaults (optimizer sgd, lr 0.1" in out
    assert "`--preset text`" in out
    args = argparse.Namespace(preset=None, resume=False)
    assert text_defaults_note(args, TrainConfig(dataset="cifar10")) is None  # images: their own defaults
    with_preset = argparse.Namespace(preset="text", resume=False)
    assert text_defaults_note(with_preset, TrainConfig(dataset="textfolder")) is None


def test_temperature_notes():
    report = {"ts_method": "ece_grid", "n_val": 900, "temperature": {"ece_grid": {"value": 0.1, "at_bound": True}}}
    (edge,) = temperature_notes(report)
    assert "ece_grid" in edge and "edge of its search range" in edge
    report["temperature"]["ece_grid"]["at_bound"] = False
    assert temperature_notes(report) == []
    report["n_val"] = 99
    (few,) = temperature_notes(report)
    assert "99 validation samples" in few


def test_list_shows_each_datasets_own_model(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "model: 20newsgroups: gpcnn; sst2: treelstm" in out
    assert "\n  text " in out
