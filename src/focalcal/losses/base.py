"""The common base class of every training loss, and the shared numerics.

Everything that is the same for all losses lives here, once: input checks, the float32 / no-autocast
computation, ``ignore_index``, per-class weights ``alpha`` and the three reductions. A concrete loss only
writes :meth:`CalibrationLoss.per_sample_loss` (and, for batch-level regularisers such as MMCE,
:meth:`CalibrationLoss.batch_term`).

Reduction semantics (the same for every loss)
---------------------------------------------
Let ``l_i`` be the per-sample loss of row ``i``, ``B`` the batch term (0 for most losses), ``k_i`` = 1 when
``labels[i] != ignore_index`` and 0 otherwise, and ``w_i = k_i * alpha[labels[i]]`` (``w_i = k_i`` without
``alpha``). The batch term is shared out to every kept row, ``l'_i = l_i + B``, and

* ``"none"``: returns ``w_i * l'_i`` (shape ``[N]``; 0 on ignored rows) -- like ``torch.nn.CrossEntropyLoss``;
* ``"sum"``: ``sum_i w_i * l'_i``;
* ``"mean"`` (default): ``sum_i w_i * l'_i / sum_i w_i`` -- i.e. normalised by the summed weight of the kept
  rows, exactly like torch's weighted cross-entropy. Ignored rows count in neither numerator nor
  denominator. If no row is kept (or all kept weights are 0) the mean is 0 (torch returns NaN), so a fully
  ignored batch cannot poison training.

Hence ``mean = weighted mean of l_i + B`` and ``sum = weighted sum of l_i + B * sum_i w_i``. Where a sample
holds several targets (an SST tree: one label per node), :meth:`CalibrationLoss.sum_per_sample` gives
``weighted sum of l_i + B * samples``: the batch term once per sample, not once per target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..validation import check_loss_inputs, check_num_classes

__all__ = ["CalibrationLoss", "REDUCTIONS", "guarded_pow", "true_class_log_prob", "TINY"]

REDUCTIONS = ("mean", "sum", "none")

#: Smallest positive normal float32. Bases of fractional powers are clamped to it, so that
#: ``x ** gamma`` has a finite derivative even where ``x`` underflows to 0 (``gamma < 1``).
TINY = torch.finfo(torch.float32).tiny


def guarded_pow(base: Tensor, exponent: Tensor | float) -> Tensor:
    """``base ** exponent`` for ``base >= 0``, with a finite value and gradient everywhere.

    The derivative of ``x ** g`` is ``g * x ** (g - 1)``, which is infinite at ``x = 0`` for ``g < 1`` and
    turns into NaN once multiplied by the zero that usually accompanies it (e.g. ``-log p = 0`` at
    ``p = 1``). Clamping the base at :data:`TINY` (1.18e-38) keeps the derivative finite; below the clamp
    the gradient through the base is 0, and the value changes by less than ``TINY ** exponent``.
    """
    return base.clamp_min(TINY).pow(exponent)


def _to_weight_tensor(alpha: object, num_classes: int) -> Tensor:
    if isinstance(alpha, str):
        parts = [s for s in alpha.replace(";", ",").split(",") if s.strip()]
        try:
            values = [float(s) for s in parts]
        except ValueError as exc:
            raise InputError(f"alpha must be {num_classes} comma-separated numbers, got {alpha!r}") from exc
        tensor = torch.tensor(values, dtype=torch.float32)
    elif isinstance(alpha, Tensor):
        tensor = alpha.detach().to(dtype=torch.float32, device="cpu").reshape(-1)
    elif isinstance(alpha, Sequence) or hasattr(alpha, "__array__"):
        try:
            tensor = torch.as_tensor(alpha, dtype=torch.float32).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise InputError(f"alpha must be a sequence of {num_classes} numbers, got {alpha!r}") from exc
    else:
        raise InputError(f"alpha must be a tensor or sequence of {num_classes} numbers, got {alpha!r}")
    if tensor.numel() != num_classes:
        raise InputError(f"alpha must have one weight per class ({num_classes}), got {tensor.numel()}")
    if not bool(torch.isfinite(tensor).all()) or bool((tensor < 0).any()):
        raise InputError(f"alpha weights must be finite and >= 0, got {tensor.tolist()}")
    return tensor


class CalibrationLoss(nn.Module):
    """Base class of every focalcal training loss (see ``docs/ARCHITECTURE.md``, "Losses").

    Args:
        num_classes: K, the number of classes (>= 2). ``logits.shape[1]`` must equal it.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``; see the module docstring for the exact
            normalisation.
        ignore_index: label value whose rows are dropped (not counted in the mean). Default -100, as torch;
            like torch it may also be a class index in ``[0, K)``, which then ignores that class.
        alpha: optional per-class weights, tensor/sequence of K non-negative floats (or a comma-separated
            string from the CLI). Row ``i`` is weighted by ``alpha[labels[i]]``; "mean" divides by the sum
            of the weights of the kept rows (torch's weighted-CE convention).
        validate: if True (default) every forward checks that each label is in ``[0, K)`` or equals
            ``ignore_index`` and raises ``ValueError`` otherwise, instead of a deep gather/CUDA assert. The
            check is one ``.any()`` reduction and therefore one host-device synchronisation per call on GPU;
            pass ``validate=False`` to skip it once the data pipeline is trusted (an out-of-range label then
            fails inside torch).

    Forward:
        ``forward(logits, labels)`` with ``logits`` a float tensor ``[N, K]`` of any float dtype and
        ``labels`` an integer tensor ``[N]``. The loss is computed in float32 with autocast disabled, even
        when called inside ``torch.autocast`` with bf16/fp16. Returns a float32 scalar for "mean"/"sum" and a
        float32 ``[N]`` tensor for "none". Units: nats (natural log) for the log-based losses.

    Raises:
        ValueError: bad constructor arguments; logits not 2-D or with ``shape[1] != K``; labels not a 1-D
            integer tensor of length N; labels out of range (when ``validate``).

    Subclasses implement :meth:`per_sample_loss` and optionally :meth:`batch_term`, :meth:`set_epoch`
    and (with ``needs_validation = True``) :meth:`update_from_validation`. State that changes during
    training must live in registered buffers so that ``state_dict()`` checkpoints it.
    """

    #: True for losses that must see the validation predictions after every epoch (AdaFocal).
    needs_validation: ClassVar[bool] = False

    def __init__(
        self,
        num_classes: int,
        *,
        reduction: str = "mean",
        ignore_index: int = -100,
        alpha: Tensor | Sequence[float] | str | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        if reduction not in REDUCTIONS:
            raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise InputError(f"ignore_index must be an integer, got {ignore_index!r}")
        self.num_classes = num_classes
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.validate = bool(validate)
        self.alpha: Tensor | None
        if alpha is None:
            self.register_buffer("alpha", None)
        else:
            self.register_buffer("alpha", _to_weight_tensor(alpha, num_classes))

    # ------------------------------------------------------------------ hooks for subclasses
    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        """Per-sample loss ``[N]`` (float32) from float32 ``logits [N, K]`` and labels ``[N]``.

        ``labels`` are already safe to index with (ignored rows hold 0); ``keep`` is the bool mask of
        rows that count. Values on ignored rows are discarded by the base class.
        """
        raise NotImplementedError

    def batch_term(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor | None:
        """Optional batch-level term (float32 scalar) added to every kept row; None if there is none."""
        return None

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the engine at the start of every epoch (0-based ``epoch`` of ``epochs``). No-op here."""

    def update_from_validation(self, logits: Tensor, labels: Tensor) -> None:
        """Called after each validation pass when ``needs_validation`` is True. No-op here."""

    # ------------------------------------------------------------------ shared machinery
    def _prepare(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Float32 logits, safe int64 labels (ignored rows -> 0) and the keep mask; validates labels."""
        check_loss_inputs(logits, labels, self.num_classes)
        labels = labels.long()
        keep = labels != self.ignore_index
        if self.validate:
            bad = keep & ((labels < 0) | (labels >= self.num_classes))
            if bool(bad.any()):  # one host-device sync; see the class docstring
                examples = labels[bad][:5].tolist()
                raise InputError(
                    f"labels must be in [0, {self.num_classes}) or equal ignore_index={self.ignore_index}; "
                    f"got out-of-range labels {examples}"
                )
        safe = torch.where(keep, labels, torch.zeros_like(labels))
        return logits.float(), safe, keep

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Loss of ``logits [N, K]`` against ``labels [N]``; see the class docstring."""
        with torch.autocast(device_type=logits.device.type, enabled=False):
            x, y, keep = self._prepare(logits, labels)
            loss, weights, extra = self._parts(x, y, keep)
            if extra is not None:
                loss = loss + extra
            weighted = torch.where(keep, weights * loss, torch.zeros_like(loss))
            if self.reduction == "none":
                return weighted
            total = weighted.sum()
            if self.reduction == "sum":
                return total
            denom = weights.sum()
            return total / torch.where(denom > 0, denom, torch.ones_like(denom))

    def sum_per_sample(self, logits: Tensor, labels: Tensor, samples: int) -> Tensor:
        """The loss of a batch whose ``samples`` samples hold several targets each (an SST tree: one label
        per node), summed so that dividing it by ``samples`` gives the per-sample loss:
        ``sum_i w_i * l_i + samples * B``, a float32 scalar.

        The per-target losses ``l_i`` are summed (each sample's loss is the sum over its targets), while a
        batch term ``B`` (MMCE) counts once per sample, not once per target: divided by ``samples`` this is
        ``mean over samples of the summed target losses + B``, the per-sample analogue of the ``"mean"``
        reduction (``weighted mean of l_i + B``), so ``lam`` weighs MMCE against one sample's loss whatever
        the number of targets. (``reduction="sum"`` would give ``B * sum_i w_i``: with ~37 labelled nodes
        per SST tree, a weight ~37 times ``lam``.) The loss's own ``reduction`` is not used.

        Raises:
            InputError: ``samples`` is not a positive integer; the inputs as :meth:`forward`.

        Example:
            >>> import torch
            >>> from focalcal.losses import build_loss
            >>> loss = build_loss("ce", num_classes=3)
            >>> logits, labels = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
            >>> round(float(loss.sum_per_sample(logits, labels, samples=2)) / 2, 4)  # 2 targets a sample
            2.1972
        """
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise InputError(f"samples must be a positive integer (the batch's samples), got {samples!r}")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            x, y, keep = self._prepare(logits, labels)
            loss, weights, extra = self._parts(x, y, keep)
            total = torch.where(keep, weights * loss, torch.zeros_like(loss)).sum()
            return total if extra is None else total + samples * extra

    def _parts(self, x: Tensor, y: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Per-row losses ``[N]``, row weights ``[N]`` (``keep`` times ``alpha``) and the batch term (or None)."""
        weights = keep.to(torch.float32)
        if self.alpha is not None:
            weights = weights * self.alpha[y]
        return self.per_sample_loss(x, y, keep), weights, self.batch_term(x, y, keep)

    def extra_repr(self) -> str:
        parts = [f"num_classes={self.num_classes}", f"reduction={self.reduction!r}"]
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        if self.alpha is not None:
            parts.append("alpha=<per-class weights>")
        return ", ".join(parts)


def true_class_log_prob(logits: Tensor, labels: Tensor) -> Tensor:
    """``log softmax(logits)[i, labels[i]]`` as ``[N]``, accurate even where ``p`` rounds to 1.

    ``F.log_softmax`` evaluates ``log(sum_k exp(z_k - max))``, and in float32 that sum rounds to exactly 1
    once the other classes are ``exp(-17)`` below the top one, so ``log p`` (and hence ``1 - p``) becomes 0:
    for logits ``[20, 0]`` it returns 0 instead of ``-2.06e-9``. Here the top class's own term (exactly 1)
    is kept out of the sum and ``log1p`` is used, with ``m = max_k z_k``::

        log p_y = (z_y - m) - log1p(sum_{k != argmax} exp(z_k - m))

    an exact identity, so ``-expm1(log p)`` recovers ``1 - p`` to full relative precision. Gradients are
    the usual ``onehot - softmax``.
    """
    top, arg = logits.max(dim=1, keepdim=True)
    shifted = logits - top
    others = torch.exp(shifted).scatter(1, arg, 0.0)  # drop exactly one maximal entry (its exp is 1)
    return shifted.gather(1, labels.unsqueeze(1)).squeeze(1) - torch.log1p(others.sum(dim=1))
