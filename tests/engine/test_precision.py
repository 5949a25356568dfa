"""Training precision: measured per machine and model on the CPU, by the hardware rule on CUDA; cached safely."""

import json
import multiprocessing as mp
import platform
import sys

import pytest
import torch

from focalcal.engine import TrainConfig, Trainer
from focalcal.engine import precision as P
from focalcal.engine.device import cpu_has_native_bf16, exact_float32, resolve_device
from focalcal.models import build_model

CPU = torch.device("cpu")


def _cpuinfo_flags() -> set[str]:
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64")
    or not hasattr(torch.cpu, "get_capabilities"),
    reason="reads x86 /proc/cpuinfo flags as the reference; needs torch.cpu.get_capabilities",
)
def test_native_bf16_detection_agrees_with_proc_cpuinfo():
    flags = _cpuinfo_flags()
    assert cpu_has_native_bf16() == bool({"amx_bf16", "avx512_bf16"} & flags)


def test_candidates_follow_the_cpu_and_the_fixed_settings(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    assert P.cpu_candidates(None, None) == [(False, False), (False, True)]  # no emulated bf16 is tried
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    assert P.cpu_candidates(None, None) == [(False, False), (False, True), (True, False), (True, True)]
    assert P.cpu_candidates(False, None) == [(False, False), (False, True)]  # --no-amp
    assert P.cpu_candidates(True, False) == [(True, False)]


@pytest.mark.parametrize("amp", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_both_settings_given_measures_nothing(monkeypatch, amp, channels_last):
    monkeypatch.setattr(P, "measure_cpu", lambda *a, **k: pytest.fail("measured although both were given"))
    got = P.resolve_precision(CPU, amp, channels_last, model=build_model("resnet20", 10))
    assert (got.amp, got.channels_last, got.reason) == (amp, channels_last, "given")


def test_the_fastest_candidate_wins_and_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("FOCALCAL_CACHE", str(tmp_path))
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    fake = {(False, False): 4.0, (False, True): 3.0, (True, False): 2.5, (True, True): 1.0}
    calls = []

    def timer(model, shape, candidates, **kw):
        calls.extend(candidates)
        return {P._label(a, c): fake[(a, c)] for a, c in candidates}

    monkeypatch.setattr(P, "measure_cpu", timer)
    model = build_model("resnet20", 10)
    got = P.resolve_precision(CPU, None, None, model=model)
    assert (got.amp, got.channels_last) == (True, True) and len(calls) == 4
    assert got.timings == {"fp32": 4.0, "fp32+channels_last": 3.0, "bf16": 2.5, "bf16+channels_last": 1.0}
    again = P.resolve_precision(CPU, None, None, model=model)  # from the cache: no new measurement
    assert (again.amp, again.channels_last) == (True, True) and len(calls) == 4 and "cached" in again.reason
    fake[(False, True)] = 0.5  # --no-amp is another key: measured on its own, fp32+channels_last wins
    no_amp = P.resolve_precision(CPU, False, None, model=model)
    assert (no_amp.amp, no_amp.channels_last) == (False, True) and len(calls) == 6


def test_measuring_leaves_the_model_and_the_random_state_untouched():
    torch.manual_seed(3)
    model = build_model("resnet20", 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    timings = P.measure_cpu(model, (3, 32, 32), [(False, False), (False, True)], batch=8, rounds=3)
    assert set(timings) == {"fp32", "fp32+channels_last"} and all(t > 0 for t in timings.values())
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def _measure_in_child(cache: str, out: str) -> None:
    import os

    os.environ["FOCALCAL_CACHE"] = cache
    torch.set_num_threads(1)
    got = P.resolve_precision(torch.device("cpu"), False, None, model=build_model("resnet20", 10))
    with open(out, "w") as f:
        json.dump([got.amp, got.channels_last], f)


def test_concurrent_runs_share_the_cache_safely(tmp_path):
    ctx = mp.get_context("spawn")
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    procs = [ctx.Process(target=_measure_in_child, args=(str(tmp_path / "cache"), str(o))) for o in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    files = list((tmp_path / "cache" / "precision").glob("*.json"))
    assert len(files) == 1, files  # one key, one file, never torn
    record = json.loads(files[0].read_text())
    assert set(record["timings"]) == {"fp32", "fp32+channels_last"} and record["measured_in_seconds"] > 0
    assert not list((tmp_path / "cache" / "precision").glob(".*.tmp"))
    for o in outs:
        assert json.loads(o.read_text())[0] is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_defaults():
    native = torch.cuda.get_device_properties(0).major >= 8  # Ampere or newer: bf16 tensor cores
    got = P.resolve_precision(torch.device("cuda", 0), None, None)
    assert (got.amp, got.channels_last) == (native, True)


def test_exact_float32_turns_tf32_off_and_restores():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = True
        with exact_float32(torch.device("cuda")):  # the flags are global: no GPU is needed to check them
            assert not cudnn.allow_tf32 and not matmul.allow_tf32
        assert cudnn.allow_tf32 and matmul.allow_tf32
        with exact_float32(CPU):
            assert cudnn.allow_tf32 and matmul.allow_tf32
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="use auto, cpu, cuda"):
        resolve_device("tpu9")


def test_trainer_applies_and_logs_the_resolved_precision(monkeypatch, tmp_path):
    monkeypatch.setattr(
        "focalcal.engine.trainer.resolve_precision", lambda *a, **k: P.Precision(True, True, "measured (test)")
    )
    from focalcal.data import ImageData, make_splits

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (96,), generator=g)
    data = make_splits(ImageData("random", x, y, x[:32], y[:32], [str(i) for i in range(10)]), val_size=32)
    cfg = TrainConfig(epochs=1, batch_size=32, device="cpu", dynamics_train_size=0, dynamics_test_size=0)
    trainer = Trainer(cfg, tmp_path / "run", data=data, progress=False)
    assert (trainer.amp, trainer.channels_last) == (True, True)
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # the training forward really runs in bfloat16; evaluation (validation metrics) in float32
    dtypes = {True: set(), False: set()}
    trainer.model.fc.register_forward_hook(lambda mod, inp, out: dtypes[mod.training].add(out.dtype))
    trainer.fit()
    assert dtypes == {True: {torch.bfloat16}, False: {torch.float32}}
    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert record["amp"] is True and record["channels_last"] is True
    session = json.loads((tmp_path / "run" / "provenance.json").read_text())["sessions"][0]
    assert session["precision"]["chosen_by"] == "measured (test)" and session["torch"] == torch.__version__
    from focalcal.evaluation import evaluate, load_run
    from focalcal.evaluation.report import report_markdown

    run = load_run(tmp_path / "run", device="cpu")
    assert run.precision == {"amp": True, "channels_last": True}
    report, _ = evaluate(run, data)
    assert report["training_precision"] == {"amp": True, "channels_last": True}
    md = report_markdown(report, "t")
    assert "trained in bfloat16 autocast, channels_last; evaluated in float32" in md
    report["training_precision"] = None  # a run saved before the precision was recorded
    assert "trained in an unrecorded precision" in report_markdown(report, "t")
