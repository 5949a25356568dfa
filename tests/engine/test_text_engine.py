"""Text runs through the engine's seams: token sequences and trees train, select, resume, evaluate and report as
images do, with the text protocols' optimisers, epoch selection and loss normalisation."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcal.cli.main import main
from focalcal.data import DataSplits, TokenModality, TreeModality, modality_from_state
from focalcal.data.trees import Trees, batch_trees
from focalcal.engine import RunFolder, TrainConfig, Trainer
from focalcal.engine.precision import measure_cpu
from focalcal.errors import ConfigError
from focalcal.evaluation import evaluate_run, load_run, write_evaluation
from focalcal.models import build_model

VOCAB, DIM = 40, 8
RECORD = {"source": "synthetic", "dimension": DIM, "vocabulary_size": VOCAB, "oov": 3, "oov_fraction": 3 / 39}


def token_data(flip_val: bool = False) -> DataSplits:
    """Three classes of front-padded documents (L = 60): a document of class c holds words 1 + 10 c .. 10 + 10 c.
    ``flip_val``: the validation labels are shifted by one class, so validation accuracy falls as the model
    learns (the best validation epoch is then an early one)."""
    g = torch.Generator().manual_seed(0)

    def split(n: int, shift: int = 0):
        y = torch.arange(n) % 3
        x = torch.zeros(n, 60, dtype=torch.int64)
        for i in range(n):
            k = int(torch.randint(5, 40, (1,), generator=g))
            x[i, 60 - k :] = 1 + 10 * y[i] + torch.randint(0, 10, (k,), generator=g)
        return x, (y + shift) % 3

    vectors = torch.randn(VOCAB, DIM, generator=g)
    vectors[0] = 0
    mod = TokenModality(
        vocab_size=VOCAB, embedding_dim=DIM, embeddings=vectors, record=RECORD, tokenizer={"fit_on": "train"}
    )
    return DataSplits(*split(60), *split(24, int(flip_val)), *split(24), ["x", "y", "z"], mod, info={"source": "synth"})


def tree_data() -> DataSplits:
    """Binary-SST-like trees: node labels negative 0 / neutral 1 / positive 2, the leaves' words say the label;
    evaluation labels are the roots' in two classes (negative 0, positive 1) and the model returns node classes
    (0, 2) at roots."""
    g = torch.Generator().manual_seed(1)

    def draw(hi: int) -> int:
        return int(torch.randint(0, hi, (1,), generator=g))

    def split(n: int):
        lists = []
        for i in range(n):
            root = 2 * (i % 2)
            words, left, right, labels, open_ = [], [], [], [], []
            for _ in range(1 + draw(4)):
                label = root if draw(3) else 1
                words.append(1 + 10 * label + draw(10))
                left.append(-1)
                right.append(-1)
                labels.append(label)
                open_.append(len(words) - 1)
            while len(open_) > 1:
                a, b = open_.pop(0), open_.pop(0)
                words += [-1]
                left.append(a)
                right.append(b)
                labels.append(draw(3))
                open_.append(len(words) - 1)
            labels[-1] = root
            lists.append((words, left, right, labels))
        trees = Trees.from_lists(lists)
        return trees, (trees.root_labels == 2).long()

    vectors = torch.randn(VOCAB, DIM, generator=g)
    mod = TreeModality(
        vocab_size=VOCAB,
        embedding_dim=DIM,
        embeddings=vectors,
        output_classes=(0, 2),
        record=RECORD,
        tokenizer={"fit_on": "all"},
    )
    return DataSplits(*split(40), *split(12), *split(16), ["negative", "positive"], mod, head_classes=3)


def sst_config(**kw) -> TrainConfig:
    """The SST protocol on the tiny trees: Adagrad 0.05 (wd 1e-4), the word vectors by plain SGD at 0.1, the loss
    summed over each tree's nodes and averaged over the trees of a batch, no schedule, no clipping, the best
    validation epoch."""
    base = dict(
        dataset="sst2",
        model="treelstm",
        model_options={"memory": 8},
        epochs=2,
        batch_size=5,
        optimizer="adagrad",
        lr=0.05,
        weight_decay=1e-4,
        param_groups=[{"params": "embedding", "optimizer": "sgd", "lr": 0.1, "momentum": 0, "weight_decay": 0}],
        lr_schedule="constant",
        grad_clip=None,
        select_epoch="best_val_acc",
        loss_normalization="per_sample",
        dynamics_train_size=8,
        device="cpu",
        amp=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def train_trees(run_dir: str, epochs: int, resume: bool = False) -> None:
    """Used in a subprocess by the SIGKILL test: the SST-protocol run on :func:`tree_data`."""
    Trainer(sst_config(epochs=epochs), run_dir, data=tree_data(), progress=False).fit(resume=resume)


def _states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_token_run_keeps_the_best_validation_epoch_and_reports_it(tmp_path):
    data = token_data(flip_val=True)
    cfg = TrainConfig(
        dataset="20newsgroups",
        model="gpcnn",
        epochs=4,
        batch_size=20,
        optimizer="adam",
        lr=3e-3,
        lr_schedule="constant",
        grad_clip=None,
        select_epoch="best_val_acc",
        dynamics_train_size=16,
        dynamics_test_size=8,
        device="cpu",
        amp=False,
    )
    Trainer(cfg, tmp_path / "best", data=data, progress=False).fit()
    log = RunFolder(tmp_path / "best").read_log()
    accs = [r["val_acc"] for r in log]
    best = 1 + int(np.argmax(accs))  # the first of equals
    assert best < 4, f"the flipped validation labels should make an early epoch best: {accs}"
    assert [r["selected_epoch"] for r in log][-1] == best
    final = torch.load(tmp_path / "best" / "final.pt", weights_only=True)
    assert final["epoch"] == 4 and final["selected_epoch"] == best
    # the same run stopped at the selected epoch (constant lr: its first epochs are the same) has those weights
    Trainer(cfg.replace(epochs=best, select_epoch="last"), tmp_path / "short", data=data, progress=False).fit()
    _states_equal(final["model"], torch.load(tmp_path / "short" / "final.pt", weights_only=True)["model"])

    report, arrays = evaluate_run(tmp_path / "best", data=data, device="cpu")
    write_evaluation(tmp_path / "best", report, arrays)
    assert report["selected_epoch"] == best and report["epochs_trained"] == 4
    assert report["val"]["before"]["error"] == pytest.approx(1 - accs[best - 1], abs=1e-12)
    assert report["samples"] == "documents"
    assert report["inputs"]["word_vectors"] == "synthetic" and report["inputs"]["embedding_dim"] == DIM
    assert report["inputs"]["oov_words"] == 3 and report["inputs"]["tokenizer_fit_on"] == "train"
    md = (tmp_path / "best" / "report.md").read_text()
    assert f"weights of epoch {best}" in md and "word vectors `synthetic`, 8 dimensions; 3 of 40" in md


def test_tree_run_resumes_after_sigkill_to_identical_weights(tmp_path):
    """A run killed with SIGKILL (no clean-up) and resumed ends with the uninterrupted run's weights, bit for bit,
    under the SST protocol (two optimisers, per-tree loss, best-epoch selection)."""
    epochs = 8
    train_trees(str(tmp_path / "a"), epochs)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('text_engine', {str(Path(__file__))!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"m.train_trees({str(tmp_path / 'b')!r}, {epochs})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    log = tmp_path / "b" / "log.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and log.read_text().count("\n") >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = int(torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["epoch"])
    assert 1 <= done < epochs and not (tmp_path / "b" / "final.pt").exists()
    Trainer(sst_config(epochs=epochs), tmp_path / "b", data=tree_data(), progress=False).fit(resume=True)

    a = torch.load(tmp_path / "a" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "final.pt", weights_only=True)
    _states_equal(a["model"], b["model"])
    assert a["selected_epoch"] == b["selected_epoch"]
    last_a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    last_b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    _states_equal(last_a["model"], last_b["model"])
    assert len(last_b["optimizer"]["optimizers"]) == 2  # Adagrad for the rest, SGD for the word vectors
    losses = [[r["train_loss"] for r in RunFolder(tmp_path / x).read_log()] for x in ("a", "b")]
    assert losses[0] == losses[1] and len(losses[0]) == epochs


def test_sst_protocol_steps_the_word_vectors_by_plain_sgd_and_the_loss_per_tree(tmp_path):
    """One training step checked by hand: the loss is each tree's node losses summed, averaged over the batch's
    trees; the word vectors move by -0.1 * grad (plain SGD), the rest by Adagrad's first step -lr * sign-like
    g / (sqrt(g^2) + eps) plus weight decay in g."""
    data = tree_data()
    cfg = sst_config(epochs=1, dynamics_train_size=0, batch_size=40)  # one batch: the whole training split
    t = Trainer(cfg, tmp_path / "r", data=data, progress=False)
    before = {k: v.detach().clone() for k, v in t.model.named_parameters()}
    batch = batch_trees(data.train_inputs, torch.arange(40), targets="nodes")
    model = build_model("treelstm", 3, embeddings=data.modality.embeddings, memory=8, output_classes=(0, 2))
    model.load_state_dict(t.model.state_dict())
    model.train()
    torch.manual_seed(123)  # dropout draws: the same in the engine's step below
    logits = model(batch)
    per_node = torch.nn.functional.cross_entropy(logits, batch.labels, reduction="none")
    loss = per_node.sum() / 40
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    torch.manual_seed(123)
    order = torch.arange(40)
    t.train_loader.epoch = lambda epoch, **kw: iter(
        [(batch_trees(data.train_inputs, order, targets="nodes"), batch.labels)]
    )
    train_loss, _ = t._train_epoch(0)
    assert train_loss == pytest.approx(float(loss.detach()), rel=1e-6)
    after = dict(t.model.named_parameters())
    emb = "embedding.weight"
    torch.testing.assert_close(after[emb], before[emb] - 0.1 * grads[emb], rtol=0, atol=1e-7)
    for k in ("fc.weight", "compose.bias"):
        g = grads[k] + 1e-4 * before[k]
        torch.testing.assert_close(after[k], before[k] - 0.05 * g / (g.abs() + 1e-10), rtol=1e-5, atol=1e-6)


def test_sst2_reports_the_papers_confidence_beside_the_renormalised_metrics(tmp_path):
    data = tree_data()
    Trainer(sst_config(epochs=1, dynamics_train_size=0), tmp_path / "r", data=data, progress=False).fit()
    report, _ = evaluate_run(tmp_path / "r", data=data, device="cpu")
    # by hand: the trained weights in a Tree-LSTM that returns all three node classes at the roots
    state = torch.load(tmp_path / "r" / "final.pt", weights_only=True)["model"]
    full_model = build_model("treelstm", 3, vocab_size=VOCAB, embedding_dim=DIM, memory=8).eval()
    full_model.load_state_dict(state)
    with torch.no_grad():
        z = full_model(batch_trees(data.test_inputs, targets="roots")).double().numpy()  # [16, 3]
        z_val = full_model(batch_trees(data.val_inputs, targets="roots")).double().numpy()
    y, y_val = data.test_labels.numpy(), data.val_labels.numpy()

    def hand_ece(conf, correct, n_bins=15):
        total = 0.0
        for b in range(n_bins):
            lo, hi = b / n_bins, (b + 1) / n_bins
            inside = (conf >= lo) & ((conf < hi) if b < n_bins - 1 else (conf <= hi))
            if inside.any():
                total += inside.sum() / len(conf) * abs(correct[inside].mean() - conf[inside].mean())
        return total

    def kept(logits, t):  # negative, positive of the 3-way softmax at temperature t, not renormalised
        p = np.exp(logits / t - (logits / t).max(1, keepdims=True))
        return (p / p.sum(1, keepdims=True))[:, [0, 2]]

    # the paper's temperature for its confidence: the grid 0.1..10.0 minimising that ECE on VALIDATION
    grid = [i / 10 for i in range(1, 101)]
    val_eces = [hand_ece(kept(z_val, t).max(1), kept(z_val, t).argmax(1) == y_val) for t in grid]
    fitted = grid[int(np.argmin(val_eces))]
    assert report["test_extra"]["paper_confidence"]["temperature"] == pytest.approx(fitted)
    temperature = report["temperature"][report["ts_method"]]["value"]
    for stage, t in (("before", 1.0), ("after", fitted), ("after_main_temperature", temperature)):
        paper = report["test_extra"]["paper_confidence"][stage]
        assert paper["ece"] == pytest.approx(hand_ece(kept(z, t).max(1), kept(z, t).argmax(1) == y), abs=1e-9)
        assert paper["mean_confidence"] == pytest.approx(kept(z, t).max(1).mean(), abs=1e-9)
    # the standard metrics use the renormalised binary distribution: softmax over (z_neg, z_pos)
    binary = z[:, [0, 2]]
    log_p = binary - np.log(np.exp(binary).sum(1, keepdims=True))
    assert report["test"]["before"]["nll"] == pytest.approx(-log_p[np.arange(16), y].mean(), rel=1e-6)
    renormalised = np.exp(log_p).max(1)
    assert report["test"]["before"]["ece"] == pytest.approx(hand_ece(renormalised, binary.argmax(1) == y), abs=1e-6)
    assert report["test_extra"]["paper_confidence"]["before"]["ece"] != pytest.approx(report["test"]["before"]["ece"])
    assert "renormalised" in report["inputs"]["root_logits"]


def test_cli_trains_and_evaluates_real_sst2_with_a_glove_file(tmp_path, cifar_root):
    """`focalcal train --dataset sst2 --embeddings FILE --fit-on all` on a slice of the real treebank: the report
    names the vectors, their dimension and the out-of-vocabulary count (checked against the vocabulary), and
    `focalcal evaluate` rebuilds the model from the checkpoint alone (the vectors' file is gone by then)."""
    from focalcal.data.text.sst import load_sst

    root = cifar_root / "text"  # the shared data root holds text/ beside cifar10/
    glove = tmp_path / "vectors.txt"
    words = ["the", "a", "good", "bad", "film", "movie", ",", ".", "and", "not"]
    g = torch.Generator().manual_seed(0)
    glove.write_text("".join(w + " " + " ".join(f"{v:.4f}" for v in torch.randn(6, generator=g)) + "\n" for w in words))
    run = tmp_path / "run"
    args = ["train", "--dataset", "sst2", "--model", "treelstm", "--model-opt", "memory=8", "--data-dir", str(root)]
    args += ["--train-size", "30", "--val-size", "10", "--test-size", "10", "--epochs", "1", "--batch-size", "10"]
    args += ["--fit-on", "all", "--embeddings", str(glove), "--optimizer", "adagrad", "--lr", "0.05"]
    args += ["--grad-clip", "0", "--set", "lr_schedule=constant", "--set", "loss_normalization=per_sample"]
    args += ["--select-epoch", "best_val_acc", "--device", "cpu", "--no-amp", "--no-progress"]
    args += ["--dynamics-train-size", "0", "--dynamics-test-size", "0", "--out", str(run)]
    assert main(args) == 0
    vocab = load_sst(root, name="sst2", fit_on="all").vocab
    found = sum(w.lower() in set(words) for w in vocab[1:])
    report = json.loads((run / "report.json").read_text())
    info = report["inputs"]
    assert info["word_vectors"] == str(glove) and info["embedding_dim"] == 6
    assert info["vocabulary_size"] == len(vocab) and info["oov_words"] == len(vocab) - 1 - found
    assert info["tokenizer_fit_on"] == "all"
    assert (report["n_train"], report["n_val"], report["n_test"]) == (30, 10, 10)
    assert "paper_confidence" in report["test_extra"] and report["samples"] == "sentences"
    glove.unlink()
    assert main(["evaluate", str(run)]) == 0
    again = json.loads((run / "report.json").read_text())
    assert again["inputs"] == info and again["test"]["before"] == pytest.approx(report["test"]["before"])
    loaded = load_run(run, device="cpu")
    assert loaded.model.embedding.weight.shape == (len(vocab), 6)


def test_precision_measurement_times_text_models_on_their_own_inputs():
    tokens, trees = token_data(), tree_data()
    cases = [
        (build_model("gpcnn", 3, vocab_size=VOCAB, embedding_dim=DIM), tokens),
        (build_model("treelstm", 3, vocab_size=VOCAB, embedding_dim=DIM, memory=8), trees),
    ]
    for model, data in cases:
        mod, seen = data.modality, []

        def example(batch, mod=mod, data=data, seen=seen):
            x = mod.example(data.train_inputs, batch, torch.device("cpu"))
            seen.append(x)
            return x

        params = [p.detach().clone() for p in model.parameters()]
        rng = torch.get_rng_state()
        timings = measure_cpu(
            model, mod.example_key(data.train_inputs), [(False, False), (True, False)], example=example
        )
        assert set(timings) == {"fp32", "bf16"} and all(t > 0 for t in timings.values())
        assert len(seen) == 2 and len(seen[0]) == 32  # a batch of 32 of the run's own samples per candidate
        assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))  # measured on a copy
        assert torch.equal(rng, torch.get_rng_state())


def test_text_settings_are_validated_and_old_image_checkpoints_still_load():
    with pytest.raises(ConfigError, match="takes trees but dataset 'cifar10' gives images"):
        TrainConfig(model="treelstm").validate()
    with pytest.raises(ConfigError, match=r"param_groups\[0\]\.lr must be a finite number > 0"):
        sst_config(param_groups=[{"params": "embedding", "lr": 0}]).validate()
    with pytest.raises(ConfigError, match="select_epoch must be one of last, best_val_acc"):
        sst_config(select_epoch="best").validate()
    with pytest.raises(ConfigError, match="matches no trainable parameter"):
        Trainer(sst_config(param_groups=[{"params": "emb."}]), "unused", data=tree_data(), progress=False)
    with pytest.raises(ConfigError, match="channels_last applies to images"):
        Trainer(sst_config(channels_last=True), "unused", data=tree_data(), progress=False)
    old = modality_from_state({"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]})
    assert old.name == "images" and old.mean == (0.5, 0.4, 0.3)


def test_users_text_file_and_20newsgroups_come_through_the_data_set_registry(tmp_path, cifar_root):
    """`--dataset textfile` holds out the run's val_size itself (seeded by split_seed); 20newsgroups gives the
    paper's split as token ids, its data options (maxlen, fit_on) passed through."""
    rows = ["text,label"] + [
        f"{'good fine' if i % 2 else 'bad poor'} film number {i},{'pos' if i % 2 else 'neg'}" for i in range(30)
    ]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    glove = tmp_path / "g.txt"
    glove.write_text("good 0.1 0.2 0.3\nbad -0.1 0.0 0.2\nfilm 0.0 0.5 0.1\n")
    run = tmp_path / "run"
    args = ["train", "--dataset", "textfile", "--data-dir", str(tmp_path / "data.csv"), "--model", "gpcnn"]
    args += ["--data-opt", "maxlen=30", "--embeddings", str(glove), "--val-size", "4", "--epochs", "1"]
    args += ["--batch-size", "8", "--optimizer", "adam", "--lr", "0.001", "--grad-clip", "0", "--device", "cpu"]
    args += ["--no-amp", "--no-progress", "--dynamics-train-size", "0", "--out", str(run)]
    assert main(args) == 0
    report = json.loads((run / "report.json").read_text())
    assert (report["n_train"], report["n_val"], report["n_test"]) == (20, 4, 6)  # 30 - 20% test - 4 validation
    assert report["inputs"]["embedding_dim"] == 3 and report["data"]["source"] == str(tmp_path / "data.csv")

    cfg = TrainConfig(
        dataset="20newsgroups",
        model="gpcnn",
        data_dir=str(cifar_root),
        data_options={"maxlen": "200", "fit_on": "all"},
        train_size=30,
        test_size=10,
    )
    cfg.validate()
    assert cfg.data_options == {"maxlen": 200, "fit_on": "all"}  # typed by the registry's converters
    from focalcal.engine import prepare_data

    data = prepare_data(cfg)
    assert data.train_inputs.shape == (30, 200) and data.val_inputs.shape == (900, 200)
    assert data.test_inputs.shape == (10, 200) and data.num_classes == 20
    assert data.modality.info()["tokenizer_fit_on"] == "all" and data.modality.embedding_dim == 50
    assert data.info["subsets"]["train"] == "30 of 15098, seeded by split_seed 1"
