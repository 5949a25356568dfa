"""The GPU check: everything focalcal needs to know about a GPU, in one script of at most ~8 minutes.

Prints (and writes, with ``--out``, as ``gpu_check.md`` / ``gpu_check.json``) one report:

1. the device, torch / CUDA / cuDNN versions and the measured matmul rates (bf16, TF32, fp32);
2. training throughput of the paper's networks (ResNet-50, ResNet-110, WRN-26-10, DenseNet-121; batch 128,
   FLSD-53): the standard pipeline (PIL DataLoader with workers = cores, fp32, per-sample FLSD loop) against
   the engine in eager fp32, bf16 + channels_last, and bf16 + channels_last + torch.compile: images/s, the
   ratio to the baseline, and the model FLOP rate as a fraction of the measured matmul rate (MFU);
3. the CUDA-only tests (loss stability, precision defaults, the engine-vs-baseline guard on CUDA);
4. a short real run on full CIFAR-10 (CE and FLSD-53, ResNet-50, as many epochs as fit ``--run-seconds``
   each): test error and ECE before / after temperature scaling;
5. from the measured rates: the projected wall time of one 350-epoch ResNet-50 run and of the paper's whole
   CIFAR-10 table (4 networks x 6 losses x 350 epochs), stated as projections;
6. the share of a ResNet-50 epoch that evaluation takes (``benchmarks/eval_share.py``), with the dynamics
   passes every epoch and as the ``paper`` preset sets them.

``--tiny`` runs the same code on the CPU in under a minute (ResNet-20, a few steps, 256 images): CI runs
it so that the script never rots.

    python benchmarks/gpu_check.py [--out DIR] [--run-seconds 150]
    python benchmarks/gpu_check.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from eval_share import measure, shares  # beside it
from train_throughput import baseline_timer, engine_timer, flops_per_image, get_data, matmul_rate  # beside it

from focalcal.data import DataError
from focalcal.engine.device import default_eval_batch, resolve_device
from focalcal.evaluation.report import main_temperature

PAPER_MODELS = ("resnet50", "resnet110_paper", "wrn26_10", "densenet121")
PAPER_EPOCHS, PAPER_TRAIN, PAPER_LOSSES = 350, 45_000, 6
REPO = Path(__file__).resolve().parents[1]


def section_device(device: torch.device) -> dict:
    info = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
    }
    saved = torch.backends.cuda.matmul.allow_tf32
    rates = {"bf16": matmul_rate(device, torch.bfloat16)}
    torch.backends.cuda.matmul.allow_tf32 = False
    rates["fp32"] = matmul_rate(device, torch.float32)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        rates["tf32"] = matmul_rate(device, torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = saved
    info["matmul_tflops"] = {k: v / 1e12 for k, v in rates.items()}
    return info


def section_throughput(
    device: torch.device, models, steps: int, rounds: int, compile_: bool, workers: int, peaks: dict
) -> list[dict]:
    rows = []
    for name in models:
        fpi = flops_per_image(name)
        data = get_data(steps * 128)
        timers = [
            (
                "baseline: PIL DataLoader, fp32, loop FLSD",
                "fp32",
                baseline_timer(name, data, device, num_workers=workers),
            ),
            ("engine: fp32 eager", "fp32", engine_timer(name, data, device, amp=False, channels_last=False)),
            ("engine: bf16 + channels_last", "bf16", engine_timer(name, data, device, amp=True, channels_last=True)),
        ]
        if compile_:
            try:
                timers.append(
                    (
                        "engine: bf16 + channels_last + compile",
                        "bf16",
                        engine_timer(name, data, device, amp=True, channels_last=True, compile_=True),
                    )
                )
            except RuntimeError as exc:
                rows.append({"model": name, "pipeline": "engine: bf16 + channels_last + compile", "skipped": str(exc)})
        rates = {label: [] for label, _, _ in timers}
        for _ in range(rounds):
            for label, _, timed in timers:
                rates[label].append(timed())
        base = max(rates[timers[0][0]])
        for label, precision, _ in timers:
            r = sorted(rates[label])[len(rates[label]) // 2]
            peak = peaks[
                "tf32" if precision == "fp32" and "tf32" in peaks and torch.backends.cudnn.allow_tf32 else precision
            ]
            rows.append(
                {
                    "model": name,
                    "pipeline": label,
                    "images_per_s": r,
                    "vs_baseline": r / base,
                    "gflop_per_image": fpi / 1e9,
                    "mfu": r * fpi / (peak * 1e12),
                }
            )
    return rows


def section_tests(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"skipped": "no CUDA device: the CUDA-only tests need one"}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/losses/test_loss_stability.py",
        "tests/engine/test_precision.py",
        "tests/engine/test_engine_vs_baseline.py",
        "-k",
        "cuda or CUDA",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"returncode": proc.returncode, "summary": tail, "seconds": time.perf_counter() - t0}


def section_real_run(device: torch.device, model: str, seconds: float, epoch_seconds: float, tiny: bool) -> list[dict]:
    """CE and FLSD-53 on CIFAR-10 (the paper's protocol scaled to the epochs that fit), via the CLI."""
    epochs = 1 if tiny else max(2, int(seconds // epoch_seconds))
    out = []
    for loss in ("ce", "flsd53"):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [
                sys.executable,
                "-m",
                "focalcal.cli.main",
                "train",
                "--preset",
                "paper",
                "--dataset",
                "cifar10",
                "--model",
                model,
                "--loss",
                loss,
                "--epochs",
                str(epochs),
                "--set",
                "milestones=null",
                "--out",
                str(Path(tmp) / "run"),
                "--no-progress",
                "--device",
                str(device),
                "--dynamics-every",
                str(max(1, epochs // 4)),
            ]
            if tiny:
                cmd += ["--train-size", "256", "--val-size", "128", "--test-size", "256", "--batch-size", "64"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                out.append({"loss": loss, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
                continue
            rep = json.loads((Path(tmp) / "run" / "report.json").read_text())
        b, a = rep["test"]["before"], rep["test"]["after"]
        out.append(
            {
                "loss": loss,
                "model": model,
                "epochs": epochs,
                "seconds": time.perf_counter() - t0,
                "error": b["error"],
                "ece_before": b["ece"],
                "ece_after": a["ece"],
                "temperature": main_temperature(rep),
                "ts_method": rep["ts_method"],
            }
        )
    return out


def section_eval_share(device: torch.device, tiny: bool) -> dict:
    """Evaluation's share of an epoch, measured as the engine runs both passes (see eval_share.py)."""
    model, batch, rounds = ("resnet20", 16, 1) if tiny else ("resnet50", 128, 3)
    m = measure(model, device, batch=batch, eval_batch=default_eval_batch(device), rounds=rounds)
    return {**m, "shares": shares(m["train_s_per_image"], m["eval_s_per_image"])}


def projection(rows: list[dict]) -> dict:
    """Wall time of 350 epochs of 45,000 images at the best measured engine rate of each network (training
    steps only: evaluation adds its share on top)."""
    best: dict[str, float] = {}
    for r in rows:
        if r.get("pipeline", "").startswith("engine") and "images_per_s" in r:
            best[r["model"]] = max(best.get(r["model"], 0.0), r["images_per_s"])
    hours = {m: PAPER_EPOCHS * PAPER_TRAIN / rate / 3600 for m, rate in best.items()}
    out = {"one_run_hours": hours}
    if all(m in hours for m in PAPER_MODELS):
        out["cifar10_table_hours"] = PAPER_LOSSES * sum(hours[m] for m in PAPER_MODELS)
    return out


def markdown(report: dict) -> str:
    d = report["device"]
    rates = ", ".join(f"{k} {v:.1f}" for k, v in d["matmul_tflops"].items())
    lines = [
        f"## GPU check: {d['device']}",
        "",
        f"torch {d['torch']}, CUDA {d['cuda']}, cuDNN {d['cudnn']}; measured matmul TFLOP/s: {rates}",
        "",
        "MFU: model FLOPs per second over the matmul rate measured above in the same precision (a practical",
        "peak, not the datasheet's; above 100% means the convolution kernels outran a square matmul).",
        "",
        "| model | pipeline | images/s | vs baseline | GFLOP/img | MFU |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["throughput"]:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['pipeline']} | skipped: {r['skipped']} | | | |")
        else:
            lines.append(
                f"| {r['model']} | {r['pipeline']} | {r['images_per_s']:.0f} | {r['vs_baseline']:.2f}x | "
                f"{r['gflop_per_image']:.2f} | {100 * r['mfu']:.0f}% |"
            )
    t = report["tests"]
    lines += [
        "",
        f"CUDA-only tests: {t.get('summary') or t.get('skipped')}",
        "",
        "| run | epochs | seconds | error % | ECE % before -> after TS (T) |",
        "|---|---|---|---|---|",
    ]
    for r in report["real_run"]:
        if "epochs" in r:
            lines.append(
                f"| {r['model']} {r['loss']} | {r['epochs']} | {r['seconds']:.0f} | {100 * r['error']:.2f} | "
                f"{100 * r['ece_before']:.2f} -> {100 * r['ece_after']:.2f} ({r['temperature']:.2f}) |"
            )
        else:
            lines.append(f"| {r['loss']} | failed: {r['error']} | | | |")
    p = report["projection"]
    lines += [
        "",
        "Projected (training steps only, at the best measured engine rate): one 350-epoch run "
        + ", ".join(f"{m} {h:.1f} h" for m, h in p["one_run_hours"].items())
        + (
            f"; the paper's CIFAR-10 table (24 runs) {p['cifar10_table_hours']:.0f} GPU-hours"
            if "cifar10_table_hours" in p
            else ""
        ),
    ]
    e = report["eval_share"]
    every = {
        r["dynamics_every"]: r for r in e["shares"] if r["dynamics_train_size"] and r["dynamics_test_size"] is None
    }
    preset = next(r for r in e["shares"] if r["preset"])
    lines.append(
        f"\nEvaluation share of a {e['model']} epoch (training {e['training']}, evaluation {e['evaluation']}): "
        f"{100 * every[1]['share']:.1f}% with the dynamics passes every epoch, {100 * preset['share']:.1f}% as the "
        f"paper preset runs them (every {preset['dynamics_every']})"
    )
    lines.append(f"\nTotal time of this check: {report['seconds']:.0f} s")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="the CPU smoke mode CI runs (under a minute)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=20, help="timed steps of batch 128 per throughput round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--run-seconds", type=float, default=150.0, help="seconds of each real run (CE, FLSD-53)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", type=Path, help="also write gpu_check.md and gpu_check.json here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    device = torch.device("cpu") if args.tiny else resolve_device(args.device)
    models = ("resnet20",) if args.tiny else PAPER_MODELS
    steps, rounds = (2, 1) if args.tiny else (args.steps, args.rounds)
    report = {"device": section_device(device)}
    peaks = report["device"]["matmul_tflops"]
    try:
        workers = 0 if args.tiny else (os.cpu_count() or 1)
        report["throughput"] = section_throughput(
            device, models, steps, rounds, not (args.tiny or args.no_compile), workers, peaks
        )
    except DataError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    report["tests"] = section_tests(device)
    run_model = "resnet20" if args.tiny else "resnet50"
    rate = max(
        (
            r["images_per_s"]
            for r in report["throughput"]
            if r.get("model") == run_model and r["pipeline"].startswith("engine: bf16")
        ),
        default=1.0,
    )
    report["real_run"] = section_real_run(device, run_model, args.run_seconds, 1.25 * PAPER_TRAIN / rate, args.tiny)
    report["projection"] = projection(report["throughput"])
    report["eval_share"] = section_eval_share(device, args.tiny)
    report["seconds"] = time.perf_counter() - t0
    text = markdown(report)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.md").write_text(text + "\n")
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    failed = report["tests"].get("returncode", 0) != 0 or any("epochs" not in r for r in report["real_run"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
