"""What a kind of input needs from the engine: its batch sources, an example batch, the model options the data
supplies, what a checkpoint keeps, what reports say, and extra metrics.

A :class:`~focalcal.data.splits.DataSplits` carries one :class:`Modality`; the trainer, evaluation and the
precision measurement ask it, never the data set's name:

=====================  ===============================  ===============================  ==============================
                       :class:`ImageModality`           :class:`TokenModality`           :class:`TreeModality`
=====================  ===============================  ===============================  ==============================
split inputs           uint8 ``[N, C, H, W]``           int64 ids ``[N, L]``, front pad  :class:`~.trees.Trees`
batch source           :class:`~.loader.DeviceLoader`   :class:`~.sources.TokenLoader`   :class:`~.sources.TreeLoader`
model options          none                             ``embeddings`` (``[V, d]``)      ``embeddings``,
                                                                                         ``output_classes``
checkpoint keeps       ``mean``, ``std``                vocabulary size, dimension, the word vectors' record, the
                                                        tokenizer's settings (the weights are in the state dict)
=====================  ===============================  ===============================  ==============================

A checkpoint stores :meth:`Modality.state` (``state["modality"]``); :func:`modality_from_state` rebuilds it
(runs made before text support hold ``mean`` / ``std`` only: images).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch

from ..errors import CheckpointError
from .errors import DataError
from .loader import DeviceLoader
from .sources import BatchSource, TokenLoader, TreeLoader
from .trees import Trees, batch_trees

__all__ = ["ImageModality", "Modality", "TokenModality", "TreeModality", "modality_from_state"]

Predict = Callable[[torch.nn.Module, BatchSource], torch.Tensor]


class Modality:
    """The base class: one kind of input (see the module docstring). Subclasses set ``name`` (what the model
    registry's ``meta["inputs"]`` must say) and ``noun`` (what reports call one sample)."""

    name: ClassVar[str] = ""
    noun: ClassVar[str] = "samples"
    #: whether the channels_last memory format applies to its batches (4-D image tensors)
    memory_format: ClassVar[bool] = False

    # -- splits ------------------------------------------------------------------------------------------
    def rows(self, inputs: Any) -> int:
        """Samples in a split's ``inputs``."""
        return len(inputs)

    def take(self, inputs: Any, rows: torch.Tensor) -> Any:
        """The samples ``rows`` (int64 ``[n]``) of ``inputs``, in that order."""
        return inputs[rows]

    def tensors(self, inputs: Any) -> list[torch.Tensor]:
        """The tensors that hold a split's ``inputs``, in a fixed order (what :meth:`fingerprint` hashes)."""
        return [inputs]

    def fingerprint(self, inputs: Any, labels: torch.Tensor) -> str:
        """A short hash (16 hex digits) of a split: the dtype, shape and bytes of each of :meth:`tensors` of
        ``inputs`` and of its int64 ``labels`` ``[N]``. Equal data gives equal fingerprints on any machine; one
        changed pixel, token or label changes it. BLAKE2b over the tensors' memory: one pass over the split's
        bytes, small next to loading the split."""
        h = hashlib.blake2b(digest_size=8)
        for tensor in [*self.tensors(inputs), labels]:
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        return h.hexdigest()

    def source(
        self,
        inputs: Any,
        labels: torch.Tensor,
        *,
        batch_size: int,
        device: torch.device | str = "cpu",
        train: bool = False,
        seed: int = 0,
        augment: bool = False,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        model: torch.nn.Module | None = None,
    ) -> BatchSource:
        """A batch source over ``inputs`` / ``labels``: shuffled training batches (``train``: seeded per epoch,
        ``rank``'s share of ``world_size``, augmented with ``augment``) or evaluation batches in order (``augment``,
        ``rank`` and ``world_size`` ignored). ``model`` (possibly wrapped) may shape the batches (token ids)."""
        order = {
            "batch_size": batch_size,
            "device": device,
            "shuffle": train,
            "seed": seed,
            "rank": rank if train else 0,
            "world_size": world_size if train else 1,
        }
        return self._source(
            inputs, labels, train=train, augment=augment and train, channels_last=channels_last, model=model, **order
        )

    def _source(
        self,
        inputs: Any,
        labels: torch.Tensor,
        *,
        train: bool,
        augment: bool,
        channels_last: bool,
        model: Any,
        **order: Any,
    ) -> BatchSource:
        """This kind's batch source (:meth:`source`); ``order`` holds the keyword arguments every batch source takes
        (``batch_size``, ``device``, ``shuffle``, ``seed``, ``rank``, ``world_size``), resolved for ``train``."""
        raise NotImplementedError

    def example(self, inputs: Any, batch: int, device: torch.device) -> Any:
        """A model input of ``batch`` samples on ``device`` for the precision measurement and the compile
        warm-up (deterministic; the global RNG is left untouched)."""
        raise NotImplementedError

    def example_key(self, inputs: Any) -> list[Any]:
        """What the example's cost depends on, for the precision measurement's cache key."""
        return [self.name]

    # -- the model, the checkpoint and reports -----------------------------------------------------------
    def model_options(self) -> dict[str, Any]:
        """Keyword arguments of ``build_model`` the data supplies when training (may hold tensors)."""
        return {}

    def stored_model_options(self) -> dict[str, Any]:
        """The same without tensors: what rebuilds the model's shape from a checkpoint (its weights come from
        the state dict), e.g. ``vocab_size`` and ``embedding_dim`` instead of the embedding matrix."""
        return {}

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps to rebuild this modality (:func:`modality_from_state`); JSON-able."""
        return {"name": self.name}

    def info(self) -> dict[str, Any]:
        """What every report of a run on this data states besides the metrics (e.g. the word vectors)."""
        return {}

    def extra_metrics(
        self,
        *,
        model: torch.nn.Module,
        inputs: Any,
        labels: torch.Tensor,
        predict: Predict,
        batch_size: int,
        device: torch.device,
        temperature: float,
        n_bins: int,
        bin_closed: str,
        val: tuple[Any, torch.Tensor] | None = None,
    ) -> dict[str, Any]:
        """Metrics this data set adds to the report of a split (``{}``: none). ``predict(model, source)`` returns
        float32 logits of a batch source; ``temperature`` is the report's main fitted temperature; ``val``, the
        validation split's ``(inputs, labels)``, for anything the metrics fit (never the test split)."""
        return {}


class ImageModality(Modality):
    """uint8 images ``[N, C, H, W]``, normalised per channel by ``mean`` / ``std`` (0..1 scale, from the
    training images)."""

    name = "images"
    noun = "images"
    memory_format = True

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def _source(self, inputs, labels, *, train, augment, channels_last, model, **order) -> DeviceLoader:
        return DeviceLoader(
            inputs, labels, mean=self.mean, std=self.std, augment=augment, channels_last=channels_last, **order
        )

    def example(self, inputs, batch, device):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return torch.randn(batch, *inputs.shape[1:], device=device)

    def example_key(self, inputs) -> list[Any]:
        return list(inputs.shape[1:])  # the input shape (what the cache used before other modalities)

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std)}


def _text_info(record: dict[str, Any], tokenizer: dict[str, Any]) -> dict[str, Any]:
    return {
        "word_vectors": record.get("source"),
        "embedding_dim": record.get("dimension"),
        "vocabulary_size": record.get("vocabulary_size"),
        "oov_words": record.get("oov"),
        "oov_fraction": record.get("oov_fraction"),
        "oov_init": record.get("oov_init"),
        "tokenizer_fit_on": tokenizer.get("fit_on"),
        "embedding_record": dict(record),
        "tokenizer": dict(tokenizer),
    }


class _TextModality(Modality):
    """Shared by token sequences and trees: a vocabulary of ``vocab_size`` ids, an embedding matrix of
    dimension ``embedding_dim`` (``embeddings``; both ``None`` when the data was prepared without word vectors,
    as evaluation does), the word vectors' record and the tokenizer's settings (JSON-able dicts)."""

    def __init__(
        self,
        *,
        vocab_size: int,
        embedding_dim: int | None,
        embeddings: torch.Tensor | None = None,
        record: dict[str, Any] | None = None,
        tokenizer: dict[str, Any] | None = None,
    ):
        if embeddings is not None and tuple(embeddings.shape) != (vocab_size, embedding_dim):
            raise DataError(
                f"the embedding matrix is {tuple(embeddings.shape)}, the vocabulary {vocab_size} x {embedding_dim}"
            )
        self.vocab_size = int(vocab_size)
        self.embedding_dim = None if embedding_dim is None else int(embedding_dim)
        self.embeddings = embeddings
        self.record = dict(record or {})
        self.tokenizer = dict(tokenizer or {})

    def model_options(self) -> dict[str, Any]:
        if self.embeddings is None:
            raise DataError(
                "this data was prepared without word vectors (for evaluation); training needs them: prepare it "
                "with word_vectors=True"
            )
        return {"embeddings": self.embeddings}

    def stored_model_options(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim}

    def state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "record": self.record,
            "tokenizer": self.tokenizer,
        }

    def info(self) -> dict[str, Any]:
        return _text_info(self.record, self.tokenizer)


class TokenModality(_TextModality):
    """Token ids ``[N, L]`` int64, front-padded with 0. Batches drop leading padding the model ignores: a model
    with a ``receptive_field`` attribute (``gpcnn``) keeps, per batch, the longest document plus that many
    columns, which leaves its logits unchanged (see :class:`~focalcal.data.sources.TokenLoader`)."""

    name = "tokens"
    noun = "documents"

    def _source(self, inputs, labels, *, train, augment, channels_last, model, **order) -> TokenLoader:
        from ..models.registry import unwrap_model  # not at import: the models import the data's trees

        margin = getattr(unwrap_model(model), "receptive_field", None)
        return TokenLoader(inputs, labels, trim_margin=None if margin is None else int(margin), **order)

    def example(self, inputs, batch, device):
        n = min(batch, inputs.shape[0])
        reps = -(-batch // n)
        return inputs[:n].repeat(reps, 1)[:batch].to(device)  # real documents, full length (the slowest case)

    def example_key(self, inputs) -> list[Any]:
        return [self.name, int(inputs.shape[1]), self.vocab_size, self.embedding_dim]


@contextlib.contextmanager
def _all_classes(model: torch.nn.Module) -> Iterator[None]:
    """Within the block a Tree-LSTM built with ``output_classes`` returns every class's logit at roots too."""
    from ..models.registry import unwrap_model  # not at import: the models import the data's trees

    inner = unwrap_model(model)
    kept = inner.output_classes
    inner.output_classes = None
    try:
        yield
    finally:
        inner.output_classes = kept


class TreeModality(_TextModality):
    """Constituency trees (:class:`~focalcal.data.trees.Trees`). Training batches target every labelled node
    (the treebank's phrase labels, ``head_classes`` of them); evaluation batches target the roots, labelled by
    the split's labels.

    ``output_classes`` (e.g. ``(0, 2)`` for binary SST): the node classes the evaluation classes are, in order;
    the model returns only those logits at roots, so their softmax is the renormalised distribution over the
    evaluation classes. :meth:`extra_metrics` then adds the paper's confidence: the largest probability of a
    kept class under the softmax over ALL node classes, not renormalised (Mukhoti et al.'s SST code).
    """

    name = "trees"
    noun = "sentences"

    def __init__(self, *, output_classes: tuple[int, ...] | None = None, **kw: Any):
        super().__init__(**kw)
        self.output_classes = None if output_classes is None else tuple(int(c) for c in output_classes)

    def rows(self, inputs) -> int:
        return len(inputs)

    def take(self, inputs: Trees, rows: torch.Tensor) -> Trees:
        return inputs.take(rows)

    def tensors(self, inputs: Trees) -> list[torch.Tensor]:
        return [getattr(inputs, f.name) for f in dataclasses.fields(inputs)]

    def _source(self, inputs, labels, *, train, augment, channels_last, model, **order) -> TreeLoader:
        return TreeLoader(inputs, labels=labels, targets="nodes" if train else "roots", **order)

    def example(self, inputs: Trees, batch, device):
        idx = torch.arange(batch) % len(inputs)
        return batch_trees(inputs, idx, targets="nodes").to(device)  # real trees, every node a target

    def example_key(self, inputs) -> list[Any]:
        return [self.name, self.vocab_size, self.embedding_dim]

    def model_options(self) -> dict[str, Any]:
        out = super().model_options()
        if self.output_classes is not None:
            out["output_classes"] = self.output_classes
        return out

    def stored_model_options(self) -> dict[str, Any]:
        out = super().stored_model_options()
        if self.output_classes is not None:
            out["output_classes"] = list(self.output_classes)
        return out

    def state(self) -> dict[str, Any]:
        out = super().state()
        out["output_classes"] = None if self.output_classes is None else list(self.output_classes)
        return out

    def info(self) -> dict[str, Any]:
        out = super().info()
        if self.output_classes is not None:
            out["root_logits"] = (
                f"node classes {list(self.output_classes)} of the model's softmax over all node classes; the "
                "standard metrics use their renormalised softmax"
            )
        return out

    def extra_metrics(
        self, *, model, inputs, labels, predict, batch_size, device, temperature, n_bins, bin_closed, val=None
    ):
        if self.output_classes is None:
            return {}
        from ..calibration.temperature import PAPER_GRID
        from ..metrics.binning import bin_stats

        kept = torch.tensor(self.output_classes)

        def full_logits(split_inputs, split_labels):
            loader = TreeLoader(
                split_inputs, batch_size=batch_size, device=device, targets="roots", labels=split_labels
            )
            with _all_classes(model):
                return predict(model, loader).double()  # [N, node classes]

        def paper_ece(logits, y, t):
            probs = torch.softmax(logits / t, dim=1)[:, kept]
            conf, pred = probs.max(dim=1)
            correct = pred == y
            ece = float(bin_stats(conf, correct, n_bins, "equal_width", bin_closed).calibration_error("l1"))
            return ece, 1.0 - float(correct.double().mean()), float(conf.mean())

        full, y = full_logits(inputs, labels), labels.cpu().long()
        # the paper picks T by the grid minimising the validation ECE of its own confidence: fit it so on the
        # validation split (first of equals), rather than reuse the temperature of the renormalised distribution
        fitted, how = float(temperature), "the report's main temperature (no validation split given)"
        if val is not None:
            val_full, val_y = full_logits(*val), val[1].cpu().long()
            eces = [paper_ece(val_full, val_y, t)[0] for t in PAPER_GRID]
            fitted = PAPER_GRID[min(range(len(eces)), key=eces.__getitem__)]
            how = "the paper's grid (0.1..10.0) minimising the validation ECE of this confidence"
        out: dict[str, Any] = {
            "description": (
                "ECE with the paper's confidence: max over the evaluation classes of the softmax over all "
                f"{full.shape[1]} node classes (not renormalised); 'after' divides those logits by its own "
                f"temperature, fitted by {how}"
            ),
            "temperature": fitted,
        }
        for stage, t in (("before", 1.0), ("after", fitted), ("after_main_temperature", float(temperature))):
            ece, error, confidence = paper_ece(full, y, t)
            out[stage] = {"ece": ece, "error": error, "mean_confidence": confidence}
        return {"paper_confidence": out}


_MODALITIES: dict[str, type[Modality]] = {m.name: m for m in (ImageModality, TokenModality, TreeModality)}


def modality_from_state(state: dict[str, Any]) -> Modality:
    """The modality a checkpoint was trained on: ``state["modality"]`` (see :meth:`Modality.state`), or, for
    checkpoints written before text support, images normalised by ``state["mean"]`` / ``state["std"]``.

    Raises:
        CheckpointError: neither is there, or the modality's name is unknown.
    """
    saved = state.get("modality")
    if saved is None:
        if "mean" not in state or "std" not in state:
            raise CheckpointError("the checkpoint holds neither its modality nor an image normalisation (mean, std)")
        return ImageModality(state["mean"], state["std"])
    kind = _MODALITIES.get(saved.get("name"))
    if kind is None:
        raise CheckpointError(f"the checkpoint's modality {saved.get('name')!r} is unknown to this focalcal version")
    if kind is ImageModality:
        return ImageModality(saved["mean"], saved["std"])
    options = {k: saved[k] for k in ("vocab_size", "embedding_dim", "record", "tokenizer")}
    if kind is TreeModality:
        out = saved.get("output_classes")
        options["output_classes"] = None if out is None else tuple(out)
    return kind(**options)
