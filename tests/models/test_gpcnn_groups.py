"""The global-pooling CNN's length groups: the logits and gradients of a grouped, trimmed forward equal those of
the plain network on the full 1,000-token padding (written out here from the module's weights, independently
of its forward)."""

import pytest
import torch
import torch.nn.functional as F

from focalcal.errors import InputError
from focalcal.models.text import GlobalPoolingCNN

VOCAB = 50


def untrimmed_logits(model, tokens):
    """The authors' network, step by step, on all ``L`` columns (no trimming, no groups)."""
    x = model.embedding.weight[tokens].transpose(1, 2)
    x = F.max_pool1d(F.relu(F.conv1d(x, model.conv1.weight, model.conv1.bias)), 5, stride=1)
    x = F.max_pool1d(F.relu(F.conv1d(x, model.conv2.weight, model.conv2.bias)), 5, stride=1)
    x = F.relu(F.conv1d(x, model.conv3.weight, model.conv3.bias)).amax(dim=2)
    return model.fc(model.dropout(F.relu(model.hidden(x))))


def documents(seed, lengths):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:  # front-padded to 1,000 tokens; longer documents keep their last 1,000
        doc = torch.randint(1, VOCAB, (min(n, 1000),), generator=g)
        rows.append(torch.cat([torch.zeros(1000 - len(doc), dtype=torch.int64), doc]))
    return torch.stack(rows)


def model_with_live_biases(seed, group_rows):
    torch.manual_seed(seed)
    vectors = torch.randn(VOCAB, 8)
    vectors[0] = 0
    model = GlobalPoolingCNN(20, vectors, group_rows=group_rows)
    with torch.no_grad():  # biases large enough that the all-padding window matters
        for conv in (model.conv1, model.conv2, model.conv3):
            conv.bias.normal_(0, 1)
    return model


# rows of every kind: all padding, shorter than the receptive field, typical, exactly 1,000, longer (truncated)
LENGTHS = [0, 3, 20, 21, 50, 151, 219, 400, 999, 1000, 1500, 7, 151, 30, 12, 640, 88, 2, 300, 1000]


@pytest.mark.parametrize("group_rows", [1, 3, 16, None])
def test_grouped_logits_equal_the_untrimmed_network(group_rows):
    model = model_with_live_biases(0, group_rows).eval()
    tokens = documents(0, LENGTHS)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), untrimmed_logits(model, tokens), atol=1e-5, rtol=0)


def test_grouped_training_step_equals_the_untrimmed_one_dropout_included():
    model = model_with_live_biases(1, 4).train()  # 20 rows in 5 groups; dropout 0.3 active
    tokens, labels = documents(1, LENGTHS), torch.arange(20) % 20
    torch.manual_seed(7)
    F.cross_entropy(model(tokens), labels).backward()
    grouped = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch.manual_seed(7)  # the same dropout draws: one mask over the batch in its own order
    F.cross_entropy(untrimmed_logits(model, tokens), labels).backward()
    assert grouped.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for name, grad in grouped.items():
        torch.testing.assert_close(grad, model.get_parameter(name).grad, atol=1e-5, rtol=1e-4, msg=name)


def test_group_rows_must_be_positive():
    with pytest.raises(InputError, match="group_rows must be >= 1"):
        GlobalPoolingCNN(20, torch.randn(VOCAB, 8), group_rows=0)
