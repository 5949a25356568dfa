"""Per-epoch training-dynamics statistics (paper Sec. 3, Figs. 2 and 5), computed from logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def split_nll_entropy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean NLL and softmax entropy (nats), overall and split by correct / incorrect predictions.

    Args:
        logits: ``[N, K]`` float; labels: ``[N]`` int64.

    Returns:
        keys ``nll, entropy, nll_correct, entropy_correct, nll_incorrect, entropy_incorrect, accuracy,
        n_correct, n_incorrect``; a mean over an empty group is ``None``.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    nll = -logp.gather(1, labels[:, None]).squeeze(1)
    entropy = -(logp.exp() * logp).nan_to_num().sum(1)  # 0 * -inf terms are 0
    correct = logp.argmax(1) == labels

    def mean(x: torch.Tensor, mask: torch.Tensor) -> float | None:
        return float(x[mask].mean()) if bool(mask.any()) else None

    every = torch.ones_like(correct)
    return {
        "nll": mean(nll, every),
        "entropy": mean(entropy, every),
        "nll_correct": mean(nll, correct),
        "entropy_correct": mean(entropy, correct),
        "nll_incorrect": mean(nll, ~correct),
        "entropy_incorrect": mean(entropy, ~correct),
        "accuracy": float(correct.float().mean()),
        "n_correct": int(correct.sum()),
        "n_incorrect": int((~correct).sum()),
    }
