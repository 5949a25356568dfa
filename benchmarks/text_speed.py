"""Training steps of the 20 Newsgroups CNN (``gpcnn``) on real 20 Newsgroups batches: length groups vs none.

The paper's protocol pads every document to 1,000 tokens; most are far shorter (median ~150). ``gpcnn``
sorts a batch's rows by length into groups of ``group_rows`` and trims each group to its longest row plus the
receptive field, which is exact (tests/models/test_gpcnn_groups.py). This times full training steps (Adam,
cross-entropy, the paper's batch of 128) on the same real batches for each ``group_rows`` (``None``: one group
trimmed to the batch's longest row, the engine before length groups) in interleaved rounds, in float32 and
in bfloat16 autocast, and prints documents per second, the projected epoch (15,098 documents, the paper's
split) and the ratio to ``None`` measured in the same round.

    FOCALCAL_DATA=../shared/data python benchmarks/text_speed.py [--rounds 3] [--steps 6]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from focalcal.engine import prepare_data
from focalcal.engine.device import autocast
from focalcal.experiments.presets import experiment
from focalcal.models.text import GlobalPoolingCNN

CHOICES = (None, 32, 16, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="training steps per choice and round")
    args = parser.parse_args()
    cfg = experiment("paper_text/20newsgroups/gpcnn/ce").train_config()
    data = prepare_data(cfg)
    tokens, labels = data.train_inputs, data.train_labels
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=g)[: cfg.batch_size * args.steps]  # random batches, as training
    batches = [(tokens[rows], labels[rows]) for rows in order.split(cfg.batch_size)]
    lengths = (tokens != 0).sum(1).float()
    print(
        f"20 Newsgroups training documents: {len(labels)}; tokens per document (of {tokens.shape[1]}): "
        f"median {lengths.median():.0f}, mean {lengths.mean():.0f}; threads {torch.get_num_threads()}"
    )
    for amp in (False, True):
        models = {}
        for choice in CHOICES:
            torch.manual_seed(0)
            model = GlobalPoolingCNN(data.num_classes, **data.modality.model_options(), group_rows=choice)
            models[choice] = (model.train(), torch.optim.Adam([p for p in model.parameters() if p.requires_grad]))
        rates: dict = {c: [] for c in CHOICES}
        ratios: dict = {c: [] for c in CHOICES}
        for r in range(args.rounds + 1):  # round 0 warms up
            seconds = {}
            for choice, (model, opt) in models.items():
                t0 = time.perf_counter()
                for x, y in batches:
                    with autocast(torch.device("cpu"), amp):
                        logits = model(x)
                    loss = F.cross_entropy(logits.float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                seconds[choice] = time.perf_counter() - t0
            if r:
                for c in CHOICES:
                    rates[c].append(len(order) / seconds[c])
                    ratios[c].append(seconds[None] / seconds[c])
        mode = "bfloat16 autocast" if amp else "float32"
        print(f"\n{mode}: {args.steps} steps of {cfg.batch_size} documents, {args.rounds} rounds")
        print(f"{'group_rows':>12s} {'docs/s':>8s} {'epoch (s)':>10s} {'vs None':>8s} {'(min-max)':>12s}")
        for c in CHOICES:
            rate = statistics.median(rates[c])
            print(
                f"{str(c):>12s} {rate:8.1f} {15098 / rate:10.1f} {statistics.median(ratios[c]):7.2f}x "
                f"{min(ratios[c]):5.2f}-{max(ratios[c]):5.2f}"
            )


if __name__ == "__main__":
    main()
