"""The training precision and memory format: chosen by measuring the run's own model on this machine.

On a GPU the choice follows the hardware: bfloat16 autocast with channels_last on compute capability 8.0+
(bf16 tensor cores), float32 below. On a CPU the same rule of thumb fails both ways (an AVX512-BF16 CPU
without AMX can train ResNet-20 faster in bf16; a laptop CPU emulates bf16 and is slower; each is measured
by ``benchmarks/train_throughput.py``), so the default is measured: a few forward+backward steps of a copy
of the run's model on an example input (random images; for text, the run's own token ids or trees, from its
data's modality), in each candidate setting, fastest wins. Candidates are float32 NCHW, float32 channels_last
and, when the CPU has native bf16 (AVX512-BF16 or AMX-BF16), bf16 autocast NCHW and channels_last;
channels_last applies to images only.
``--amp/--no-amp`` and ``--channels-last/--no-channels-last`` fix their part of the choice (with both fixed
nothing is measured).
``torch.compile`` is never chosen automatically: its warm-up (compiling the model) is long next to a short
run's steps.

Measurements are cached per (CPU model, torch version, threads, model and its options, input shape, candidates) in
``$FOCALCAL_CACHE/precision/`` (one small JSON file per key, written atomically: concurrent runs never
see a torn file; two runs measuring the same key at once both write the same kind of answer). The model
and the global random state are left untouched (the timing runs on a deep copy, under a forked RNG).
The choice, its timings and where it came from are recorded in the run's log and provenance.

Evaluation passes always run in float32; :func:`eval_channels_last` picks their memory format the same way
(on some CPUs channels_last inputs run the float32 forward pass of a convolutional network faster, on others
slower; ``benchmarks/eval_share.py`` times the evaluation pass in the format chosen).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text
from .device import autocast, bf16_is_fast, cpu_has_native_bf16
from .provenance import cpu_name

CACHE_VERSION = 1
#: Interleaved timing rounds (one step per candidate each), untimed warm-up steps per candidate, and the
#: batch size of the timed steps (small, so that measuring a large model on a CPU stays short).
STEPS = 5
WARMUP = 2
MEASURE_BATCH = 32


@dataclass(frozen=True)
class Precision:
    """The engine's choice: ``amp`` (bfloat16 autocast of the training forward pass), ``channels_last``,
    ``reason`` (how it was chosen) and, when measured, ``timings`` (seconds per step of each candidate)."""

    amp: bool
    channels_last: bool
    reason: str
    timings: dict[str, float] = field(default_factory=dict)


def _label(amp: bool, cl: bool) -> str:
    return f"{'bf16' if amp else 'fp32'}{'+channels_last' if cl else ''}"


def cpu_candidates(amp: bool | None, channels_last: bool | None) -> list[tuple[bool, bool]]:
    """The (amp, channels_last) settings worth measuring on this CPU, honouring the fixed ones."""
    amps = [amp] if amp is not None else ([False, True] if cpu_has_native_bf16() else [False])
    cls = [channels_last] if channels_last is not None else [False, True]
    return [(a, c) for a in amps for c in cls]


def _cache_dir() -> Path:
    from ..data import default_cache_dir

    return default_cache_dir() / "precision"


def _model_id(model: torch.nn.Module) -> str:
    """The model's registry name with its options and output width (what its speed depends on)."""
    name = getattr(model, "focalcal_name", type(model).__name__)
    options = getattr(model, "focalcal_options", {})
    width = next((m.out_features for m in reversed(list(model.modules())) if isinstance(m, torch.nn.Linear)), None)
    return json.dumps([name, options, width], sort_keys=True, default=str)


def _key(model_name: str, input_shape, batch: int, candidates) -> str:
    text = json.dumps(
        [
            CACHE_VERSION,
            cpu_name(),
            torch.__version__,
            torch.get_num_threads(),
            model_name,
            list(input_shape),
            batch,
            [list(c) for c in candidates],
        ]
    )
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _to_channels_last(x: Any) -> Any:
    """4-D image batches in channels_last; any other input (token ids, trees) as it is."""
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


class _Stepper:
    """Forward+backward steps of a copy of a model in one setting, on a fixed input: ``example(batch)`` (the
    run's kind of input, e.g. token ids or trees), else random images of ``input_shape``."""

    def __init__(
        self,
        model: torch.nn.Module,
        input_shape,
        *,
        amp: bool,
        channels_last: bool,
        batch: int,
        example: Callable[[int], Any] | None = None,
    ):
        self.device = next(model.parameters()).device
        self.amp = amp
        self.model = copy.deepcopy(model).train()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.x = example(batch) if example is not None else torch.randn(batch, *input_shape, device=self.device)
        if channels_last:
            self.x = _to_channels_last(self.x)

    def __call__(self) -> float:
        t0 = time.perf_counter()
        with autocast(self.device, self.amp):
            out = self.model(self.x)
        out.float().logsumexp(1).mean().backward()
        self.model.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0


def measure_cpu(
    model: torch.nn.Module,
    input_shape,
    candidates,
    *,
    batch: int = MEASURE_BATCH,
    rounds: int | None = None,
    example: Callable[[int], Any] | None = None,
) -> dict[str, float]:
    """Median seconds per step of each candidate ``(amp, channels_last)``: label -> seconds.

    The model steps on ``example(batch)`` (any input the model takes), else on random images ``[batch,
    *input_shape]``. Every candidate first takes ``WARMUP`` untimed steps; then the candidates are timed in
    interleaved rounds (one step each per round; ``rounds`` defaults to ``STEPS``), so that a change of machine
    load hits all of them alike.
    """
    rounds = STEPS if rounds is None else rounds
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        steppers = {
            _label(a, c): _Stepper(model, input_shape, amp=a, channels_last=c, batch=batch, example=example)
            for a, c in candidates
        }
        for step in steppers.values():
            for _ in range(WARMUP):
                step()
        times: dict[str, list[float]] = {k: [] for k in steppers}
        for _ in range(rounds):
            for k, step in steppers.items():
                times[k].append(step())
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def _forward_seconds(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    model(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - t0


@torch.inference_mode()
def eval_channels_last(
    device: torch.device, model: torch.nn.Module, input_shape=(3, 32, 32), *, use_cache: bool = True
) -> bool:
    """Whether float32 evaluation passes (metrics, dynamics, OOD) should feed channels_last inputs.

    On CUDA: yes. On a CPU: measured (a forward pass of a copy of ``model`` on 64 random images in each
    layout, interleaved rounds, median), and cached like the training choice. The logits are float32 either
    way; only the speed differs.
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    name = getattr(model, "focalcal_name", type(model).__name__)
    path = _cache_dir() / f"eval-{_key(_model_id(model), input_shape, 64, [(False, False), (False, True)])}.json"
    if use_cache and path.is_file():
        try:
            return bool(json.loads(path.read_text())["channels_last"])
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    m = copy.deepcopy(model).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = torch.randn(64, *input_shape, device=device)
    inputs = {False: x, True: x.contiguous(memory_format=torch.channels_last)}
    for inp in inputs.values():
        _forward_seconds(m, inp)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(STEPS):
        for cl, inp in inputs.items():
            times[cl].append(_forward_seconds(m, inp))
    med = {cl: sorted(v)[len(v) // 2] for cl, v in times.items()}
    choice = med[True] < med[False]
    if use_cache:
        atomic_write_text(
            path,
            json.dumps(
                {
                    "cpu": cpu_name(),
                    "torch": torch.__version__,
                    "model": name,
                    "seconds": {"nchw": med[False], "channels_last": med[True]},
                    "channels_last": choice,
                },
                indent=2,
            )
            + "\n",
        )
    return choice


def resolve_precision(
    device: torch.device,
    amp: bool | None,
    channels_last: bool | None,
    *,
    model: torch.nn.Module | None = None,
    input_shape=(3, 32, 32),
    use_cache: bool = True,
    example: Callable[[int], Any] | None = None,
) -> Precision:
    """The training ``Precision`` for ``device``; ``None`` values are chosen (see the module docstring).

    Args:
        input_shape: one image's shape ``(C, H, W)`` (the random inputs measured), or, with ``example``, what
            the example's cost depends on (part of the cache key; e.g. ``["tokens", 1000, V, d]``).
        example: ``example(batch)`` returns a model input of ``batch`` samples on ``device`` (token ids, a tree
            batch; :meth:`focalcal.data.Modality.example`); ``None``: random images of ``input_shape``.
            Inputs that are not 4-D image tensors are measured in their own layout only: pass
            ``channels_last=False``.

    On the CPU without a ``model`` to measure, undecided values fall back to float32 NCHW.
    """
    if device.type != "cpu":
        fast = bf16_is_fast(device)
        a = fast if amp is None else bool(amp)
        c = (device.type == "cuda") if channels_last is None else bool(channels_last)
        why = (
            "given"
            if amp is not None and channels_last is not None
            else ("bf16 tensor cores (compute capability 8.0+)" if fast else "no native bf16 on this GPU")
        )
        return Precision(a, c, why)
    candidates = cpu_candidates(amp, channels_last)
    if len(candidates) == 1:
        return Precision(*candidates[0], "given")
    if model is None:
        a, c = candidates[0]
        return Precision(a, c, "default (not measured)")
    name = getattr(model, "focalcal_name", type(model).__name__)
    path = _cache_dir() / f"{_key(_model_id(model), input_shape, MEASURE_BATCH, candidates)}.json"
    if use_cache and path.is_file():
        try:
            cached = json.loads(path.read_text())
            timings = {k: float(v) for k, v in cached["timings"].items()}
            best = min(candidates, key=lambda c: timings[_label(*c)])
            return Precision(*best, f"measured on this machine, cached in {path}", timings)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass  # a damaged cache entry is measured again
    t0 = time.perf_counter()
    timings = measure_cpu(model, input_shape, candidates, example=example)
    best = min(candidates, key=lambda c: timings[_label(*c)])
    seconds = time.perf_counter() - t0
    if use_cache:
        record = {
            "cpu": cpu_name(),
            "torch": torch.__version__,
            "model": name,
            "timings": timings,
            "measured_in_seconds": seconds,
            "choice": asdict(Precision(*best, "measured")),
        }
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return Precision(*best, f"measured on this machine in {seconds:.1f}s", timings)
