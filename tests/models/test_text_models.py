import random

import pytest
import torch

from focalcal.cli.main import main
from focalcal.data.trees import Trees, batch_trees
from focalcal.errors import InputError
from focalcal.models import MODELS, build_model, last_linear
from focalcal.models.text import RECEPTIVE_FIELD, GlobalPoolingCNN, TreeLSTM, trim_front_padding

from .test_gpcnn_groups import untrimmed_logits

VOCAB = 40


# -- Tree-LSTM --------------------------------------------------------------------------------------------------
def random_tree(rng, n_leaves, shape="random"):
    """(words, left, right, labels) of a random full binary tree, post-order (children first, root last)."""
    nodes = [(rng.randrange(VOCAB), -1, -1) for _ in range(n_leaves)]
    frontier = list(range(n_leaves))
    while len(frontier) > 1:
        j = {"random": rng.randrange(len(frontier) - 1), "chain": 0}[shape]
        nodes.append((-1, frontier[j], frontier[j + 1]))
        frontier[j : j + 2] = [len(nodes) - 1]
    order = []

    def visit(k):
        if nodes[k][1] >= 0:
            visit(nodes[k][1])
            visit(nodes[k][2])
        order.append(k)

    visit(len(nodes) - 1)
    pos = {old: new for new, old in enumerate(order)}
    words, left, right = zip(*[(w, pos.get(l, -1), pos.get(r, -1)) for w, l, r in (nodes[k] for k in order)])
    labels = [rng.randrange(-1, 3) for _ in order]
    labels[-1] = rng.choice([0, 2])
    return list(words), list(left), list(right), labels


def random_tree_set(seed, n=10):
    rng = random.Random(seed)
    lists = [random_tree(rng, 1), random_tree(rng, 9, "chain"), random_tree(rng, 1)]
    lists += [random_tree(rng, rng.randrange(1, 16)) for _ in range(n - 3)]
    return lists


def reference_tree_logits(model, lists):
    """Per-tree recursive Tree-LSTM written from the equations with the model's parameters: every node's logits
    (eval mode: no dropout), tree by tree, in node order."""
    m = model.memory
    w_c, w_o = model.leaf.weight[:m], model.leaf.weight[m:]
    b_c, b_o = model.leaf.bias[:m], model.leaf.bias[m:]
    u_l, u_r, b = model.compose.weight[:, :m], model.compose.weight[:, m:], model.compose.bias

    def gate(k, h_l, h_r):
        rows = slice(k * m, (k + 1) * m)
        return u_l[rows] @ h_l + u_r[rows] @ h_r + b[rows]

    out = []
    for words, left, right, _ in lists:
        states = {}

        def node(k, words=words, left=left, right=right, states=states):
            if left[k] < 0:
                x = model.embedding.weight[words[k]]
                c = w_c @ x + b_c
                h = torch.sigmoid(w_o @ x + b_o) * torch.tanh(c)
            else:
                h_l, c_l = node(left[k])
                h_r, c_r = node(right[k])
                i, f_l, f_r = (torch.sigmoid(gate(g, h_l, h_r)) for g in range(3))
                u = torch.tanh(gate(3, h_l, h_r))
                c = i * u + f_l * c_l + f_r * c_r
                h = torch.tanh(c)
                if model.output_gate:
                    h = torch.sigmoid(gate(4, h_l, h_r)) * h
            states[k] = (h, c)
            return h, c

        node(len(words) - 1)
        out += [model.fc.weight @ states[k][0] + model.fc.bias for k in range(len(words))]
    return torch.stack(out)


@pytest.mark.parametrize("output_gate", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_tree_lstm_equals_a_recursive_reference_forward_and_gradients(seed, output_gate):
    torch.manual_seed(seed)
    lists = random_tree_set(seed)
    trees = Trees.from_lists(lists)
    model = TreeLSTM(3, torch.randn(VOCAB, 6), memory=5, output_gate=output_gate).double().eval()
    idx = torch.randperm(len(lists))
    batch = batch_trees(trees, idx, targets="nodes")
    ordered = [lists[i] for i in idx.tolist()]
    labelled = torch.tensor([y >= 0 for t in ordered for y in t[3]])
    ref_all = reference_tree_logits(model, ordered)
    weights = torch.randn(int(labelled.sum()), 3, dtype=torch.float64)

    ours = model(batch)
    assert ours.dtype == torch.float64 and ours.shape == (int(labelled.sum()), 3)
    torch.testing.assert_close(ours, ref_all[labelled], atol=1e-6, rtol=0)
    grads = torch.autograd.grad((ours * weights).sum(), list(model.parameters()))
    ref_grads = torch.autograd.grad((ref_all[labelled] * weights).sum(), list(model.parameters()))
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=0, msg=name)
    assert all(bool(g.abs().sum() > 0) for g in grads)

    roots = model(batch_trees(trees, idx))
    root_rows = torch.tensor([len(t[0]) for t in ordered]).cumsum(0) - 1
    torch.testing.assert_close(roots, ref_all[root_rows], atol=1e-6, rtol=0)


def test_tree_lstm_runs_one_composition_per_level_not_per_node():
    trees = Trees.from_lists(random_tree_set(3, n=25))
    batch = batch_trees(trees, targets="nodes")
    model = TreeLSTM(3, torch.randn(VOCAB, 6), memory=5)
    calls = []
    model.compose.register_forward_hook(lambda mod, inp, out: calls.append(out.shape[0]))
    model(batch)
    assert len(calls) == len(batch.levels) - 1 and sum(calls) == int((batch.left >= 0).sum())


def test_output_classes_apply_to_root_batches_only():
    torch.manual_seed(0)
    trees = Trees.from_lists(random_tree_set(4))
    full = TreeLSTM(3, torch.randn(VOCAB, 6), memory=5).eval()
    binary = TreeLSTM(3, full.embedding.weight, memory=5, output_classes=(0, 2)).eval()
    binary.load_state_dict(full.state_dict())
    roots = batch_trees(trees)
    torch.testing.assert_close(binary(roots), full(roots)[:, [0, 2]])
    nodes = batch_trees(trees, targets="nodes")
    assert binary(nodes).shape == (len(nodes.targets), 3)
    assert binary.output_labels(torch.tensor([2, 0, 2])).tolist() == [1, 0, 1]
    with pytest.raises(InputError, match=r"labels \[1\] are not among output_classes"):
        binary.output_labels(torch.tensor([0, 1]))
    with pytest.raises(InputError, match="output_classes must be"):
        TreeLSTM(3, vocab_size=5, output_classes=(0, 3))


def test_tree_lstm_copies_its_embeddings_and_fine_tunes_them():
    vectors = torch.randn(VOCAB, 6)
    before = vectors.clone()
    model = TreeLSTM(3, vectors, memory=5)
    batch = batch_trees(Trees.from_lists(random_tree_set(5)), targets="nodes")
    torch.nn.functional.cross_entropy(model(batch), batch.labels).backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    assert torch.equal(vectors, before)  # the data's matrix is untouched
    used = batch.words[batch.words >= 0].unique()
    assert not torch.equal(model.embedding.weight[used], before[used])


def test_tree_lstm_under_bf16_autocast_gives_float32_logits():
    torch.manual_seed(0)
    model = TreeLSTM(3, torch.randn(VOCAB, 6), memory=8).eval()
    batch = batch_trees(Trees.from_lists(random_tree_set(6)), targets="nodes")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(batch)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, model(batch), atol=0.05, rtol=0)


# -- global-pooling CNN -----------------------------------------------------------------------------------------
def glove_like(vocab=VOCAB, dim=8, seed=0):
    vectors = torch.randn(vocab, dim, generator=torch.Generator().manual_seed(seed))
    vectors[0] = 0  # padding
    return vectors


def test_gpcnn_shapes_parameters_and_classifier():
    model = build_model("gpcnn", 20, embeddings=glove_like(dim=50))
    out = model.eval()(torch.randint(0, VOCAB, (3, 64)))
    assert out.shape == (3, 20) and out.dtype == torch.float32
    assert last_linear(model) is model.fc and model.fc.in_features == 128
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # conv 50->128 k5, two conv 128->128 k5, Linear 128->128, Linear 128->20 (weights + biases)
    assert trainable == (50 * 128 * 5 + 128) + 2 * (128 * 128 * 5 + 128) + (128 * 128 + 128) + (128 * 20 + 20)
    with pytest.raises(InputError, match="L >= 21"):
        model(torch.zeros(2, 20, dtype=torch.int64))


def test_gpcnn_receptive_field_is_21_tokens():
    # one output step of the last convolution depends on exactly 21 input positions (gradient support)
    model = GlobalPoolingCNN(4, glove_like()).double()
    captured = {}
    model.conv3.register_forward_hook(lambda mod, inp, out: captured.update(out=out))
    x = torch.randn(1, 8, 60, dtype=torch.float64, requires_grad=True)
    model.embedding.forward = lambda tokens: x.transpose(1, 2)
    model(torch.zeros(1, 60, dtype=torch.int64))
    captured["out"][0, :, 17].sum().backward()
    support = torch.nonzero(x.grad[0].abs().sum(0)).flatten()
    assert support.tolist() == list(range(17, 17 + 21)) and RECEPTIVE_FIELD == model.receptive_field == 21


def front_padded(docs, length):
    return torch.stack([torch.cat([torch.zeros(length - len(d), dtype=torch.int64), d]) for d in docs])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gpcnn_trimming_to_receptive_field_padding_is_exact(seed):
    torch.manual_seed(seed)
    model = GlobalPoolingCNN(20, glove_like(seed=seed)).eval()
    with torch.no_grad():  # biases large enough that the all-padding window matters
        for conv in (model.conv1, model.conv2, model.conv3):
            conv.bias.normal_(0, 1)
    docs = [torch.randint(1, VOCAB, (n,)) for n in (1, 7, 30, 120)]
    with torch.no_grad():  # the network on all 1,000 columns (its forward trims them itself)
        full = untrimmed_logits(model, front_padded(docs, 1000))
    with torch.no_grad():
        for i, d in enumerate(docs):  # each document alone, with exactly 21 pad tokens in front
            torch.testing.assert_close(model(front_padded([d], len(d) + 21)), full[i : i + 1], atol=1e-5, rtol=0)
        trimmed = trim_front_padding(front_padded(docs, 1000))
        assert trimmed.shape == (4, 120 + 21)
        torch.testing.assert_close(model(trimmed), full, atol=1e-5, rtol=0)


def test_gpcnn_trimming_to_receptive_field_minus_one_is_not_exact():
    # hand-set weights: channel 1 detects "a real token within the window" and channel 0 of the last conv fires
    # only for the all-padding window, which exists only with >= 21 pad tokens in front
    vectors = torch.zeros(3, 1)
    vectors[1:] = 1.0
    model = GlobalPoolingCNN(2, vectors).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("embedding"):
                p.zero_()
        model.conv1.weight[1, 0, :] = 1.0  # > 0 iff a real token in the 5-window
        model.conv2.weight[1, 1, :] = 1.0
        model.conv3.weight[0, 1, :] = -10.0  # relu(1 - 10 * real) = 1 iff no real token in the 21-window
        model.conv3.bias[0] = 1.0
        model.hidden.weight[0, 0] = 1.0
        model.fc.weight[0, 0] = 1.0
    doc = torch.tensor([1, 2, 1])
    with torch.no_grad():
        reference = model(front_padded([doc], 1000))
        assert torch.equal(model(front_padded([doc], 3 + 21)), reference)
        assert not torch.equal(model(front_padded([doc], 3 + 20)), reference)
    assert reference[0, 0] == 1.0


def test_trim_front_padding_keeps_short_and_unpadded_batches():
    tokens = torch.tensor([[0, 0, 5], [0, 0, 0]])
    assert torch.equal(trim_front_padding(tokens), tokens)  # shorter than 21: nothing to trim
    full = torch.randint(1, VOCAB, (2, 50))
    assert torch.equal(trim_front_padding(full), full)
    assert trim_front_padding(torch.zeros(2, 50, dtype=torch.int64)).shape == (2, 21)


@pytest.mark.parametrize("freeze", [True, False])
def test_gpcnn_frozen_embeddings_get_no_gradient(freeze):
    model = GlobalPoolingCNN(5, glove_like(), freeze=freeze)
    tokens = front_padded([torch.randint(1, VOCAB, (30,)), torch.randint(1, VOCAB, (25,))], 40)
    model(tokens).sum().backward()
    grad = model.embedding.weight.grad
    if freeze:
        assert grad is None and not model.embedding.weight.requires_grad
    else:
        assert grad.abs().sum() > 0 and torch.all(grad[0] == 0)  # the padding row stays fixed
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "embed" not in n)


# -- registry and errors ----------------------------------------------------------------------------------------
def test_registry_builds_both_from_command_line_strings(capsys):
    tree = build_model("treelstm", 3, vocab_size="12", embedding_dim="4", memory="6", output_classes="0,2")
    assert tree.memory == 6 and tree.output_classes == (0, 2) and last_linear(tree).out_features == 3
    assert MODELS.entry("treelstm").meta["inputs"] == "trees" and MODELS.entry("gpcnn").meta["inputs"] == "tokens"
    assert MODELS.entry("resnet20").meta["inputs"] == MODELS.entry("torchvision:resnet18").meta["inputs"] == "images"
    cnn = build_model("gpcnn", 20, vocab_size="12", embedding_dim="4", freeze="false")
    assert cnn.embedding.weight.requires_grad and last_linear(cnn).out_features == 20
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "gpcnn" in listing and "treelstm" in listing and "Tree-LSTM (Tai et al. 2015" in listing


@pytest.mark.parametrize(
    "embeddings,message",
    [
        (None, "needs word vectors"),
        (torch.zeros(5, 4, dtype=torch.int64), "float tensor"),
        (torch.zeros(5), "float tensor"),
        (torch.full((5, 4), float("nan")), "NaN"),
    ],
)
@pytest.mark.parametrize("name", ["gpcnn", "treelstm"])
def test_bad_embeddings_are_one_clear_error(name, embeddings, message):
    with pytest.raises(InputError, match=message):
        build_model(name, 3, embeddings=embeddings)
