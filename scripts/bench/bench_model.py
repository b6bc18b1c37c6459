"""Model stage side by side: stock `apply_model` against worker/separation/batched.py, same
input and model.

    python -m scripts.bench.bench_model --seconds 24                 # CPU
    python -m scripts.bench.bench_model --seconds 240 --device cuda  # as scripts/bench/gpu-bench

The model has the released `htdemucs` configuration with random weights from a fixed seed:
compute does not depend on the weight values, and no weights can be downloaded here. Needs only
torch, demucs (with einops, julius, tqdm, numpy) and worker/separation/batched.py.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from fractions import Fraction
from pathlib import Path

import torch
from demucs.apply import apply_model
from demucs.htdemucs import HTDemucs

from common.tracks import FOUR_STEMS
from worker.separation.batched import BatchedModel, resolve_precision

SOURCES = list(FOUR_STEMS)
# The released htdemucs model's arguments (demucs/remote/htdemucs.yaml with its training config).
HTDEMUCS_KWARGS = dict(sources=SOURCES, segment=Fraction(39, 5), channels=48, depth=4,
                       dconv_mode=3, t_layers=5, bottom_channels=512, nfft=4096)
SAMPLERATE = 44100


def build_model(seed: int = 0) -> HTDemucs:
    """HTDemucs in the htdemucs configuration with random weights drawn from `seed`."""
    torch.manual_seed(seed)
    return HTDemucs(**HTDEMUCS_KWARGS).eval()


def test_signal(seconds: float, seed: int = 0) -> torch.Tensor:
    """A `[2, samples]` synthetic mix (beat, bass, chords, noise), normalised as Demucs does."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLERATE), dtype=torch.float64) / SAMPLERATE
    phase = t % 0.5
    kick = torch.sin(2 * math.pi * 55 * phase * (1 + 2 * torch.exp(-phase * 30)))
    kick = kick * torch.exp(-phase * 12)
    roots = torch.tensor([55.0, 73.4, 61.7, 82.4], dtype=torch.float64)[(t // 2).long() % 4]
    bass = 0.35 * torch.sign(torch.sin(2 * math.pi * roots * t))
    chords = sum(0.1 * torch.sin(2 * math.pi * roots * 4 * r * t) for r in (1, 1.26, 1.5))
    noise = 0.05 * torch.randn(2, t.numel(), generator=generator, dtype=torch.float64)
    mix = (torch.stack([kick + bass + chords * 1.2, kick + bass + chords * 0.8]) + noise).float()
    return (mix - mix.mean()) / mix.std()


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Agreement of `estimate` with `reference`, in dB (inf when identical)."""
    error = (reference.double() - estimate.double()).pow(2).sum().item()
    if error == 0:
        return math.inf
    return 10 * math.log10(reference.double().pow(2).sum().item() / error)


def jsonable(value):
    """`value` with infinite floats (identical outputs' SNR) written as "inf", for strict JSON."""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return value


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    """Most device memory allocated since the last reset, in MiB (None on the CPU)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def run_stock(model, mix: torch.Tensor, device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds and stems of stock apply_model(shifts=0), as `demucs.separate` calls it."""
    _sync(device)
    started = time.perf_counter()
    with torch.no_grad():
        out = apply_model(model, mix[None], shifts=0, split=True, overlap=0.25, device=device)
    _sync(device)
    return time.perf_counter() - started, out[0].cpu()


def run_ours(runner: BatchedModel, mix: torch.Tensor) -> tuple[float, torch.Tensor]:
    _sync(runner.device)
    started = time.perf_counter()
    out = runner.separate(mix, 0.25)
    _sync(runner.device)
    return time.perf_counter() - started, out


def warm_up(model, device: torch.device) -> None:
    """One segment through the model, so that library start-up is not timed."""
    length = int(model.segment * SAMPLERATE)
    with torch.inference_mode():
        model(torch.zeros(1, 2, length, device=device))
    _sync(device)


def compare(model, mix: torch.Tensor, device: torch.device, configs: list[dict],
            say=print, rounds: int = 1) -> list[dict]:
    """Time stock, then each `configs` entry (precision, batch, compile, once); SNR vs stock.

    With several rounds the runs alternate (stock, ours, stock, ours, ...) and each row keeps
    its fastest round: on a shared machine that is the one least disturbed by others.
    """
    seconds = mix.shape[-1] / SAMPLERATE
    model.to(device)
    warm_up(model, device)
    runners = []
    for config in configs:
        runner = BatchedModel(model, device, config.get("precision", "fp32"),
                              config.get("batch", 0), config.get("compile", False))
        label = (f"ours {runner.precision} batch {runner.batch}"
                 f"{' compiled' if runner.compiled else ''}{config.get('label', '')}")
        if runner.compiled:
            started = time.perf_counter()
            runner.warm_up()
            say(f"  ({label}: first compiled batch took {time.perf_counter() - started:.1f} s)")
        elif device.type == "cuda":
            run_ours(runner, mix[..., : SAMPLERATE * 10])  # cuDNN/autocast warm-up, untimed
        runners.append((label, runner))
    stock_times, times = [], [[] for _ in runners]
    reference, snrs, peaks = None, [], [None] * (len(runners) + 1)
    for _ in range(rounds):
        _reset_peak(device)
        took, out = run_stock(model, mix, device)
        stock_times.append(took)
        peaks[0] = _peak_mib(device)
        reference = out if reference is None else reference
        for index, (_, runner) in enumerate(runners):
            if times[index] and configs[index].get("once"):
                continue  # a row that needs no second look (e.g. the identical fp32 one)
            _reset_peak(runner.device)
            took, out = run_ours(runner, mix)
            times[index].append(took)
            peaks[index + 1] = _peak_mib(runner.device)
            if len(snrs) <= index:
                snrs.append(round(snr_db(reference, out), 1))
    stock_s = min(stock_times)
    rows = [{"name": "stock apply_model fp32", "seconds": round(stock_s, 3),
             "x_realtime": round(seconds / stock_s, 1), "speedup": 1.0, "snr_db": math.inf,
             "peak_mib": peaks[0], "all_seconds": [round(t, 3) for t in stock_times]}]
    say(_line(rows[-1]))
    for (label, runner), runs, snr, peak in zip(runners, times, snrs, peaks[1:], strict=True):
        took = min(runs)
        rows.append({"name": label, "precision": runner.precision, "batch": runner.batch,
                     "compiled": runner.compiled, "seconds": round(took, 3),
                     "x_realtime": round(seconds / took, 1),
                     "speedup": round(stock_s / took, 2), "snr_db": snr, "peak_mib": peak,
                     "all_seconds": [round(t, 3) for t in runs]})
        say(_line(rows[-1]))
    return rows


def _line(row: dict) -> str:
    return (f"  {row['name']:<40} {row['seconds']:8.2f} s {row['x_realtime']:7.1f}x real time "
            f"{row['speedup']:6.2f}x stock  SNR {row['snr_db']} dB")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} torch threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=24)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", default="fp32,auto",
                        help="comma-separated precision[:batch][:compile], e.g. "
                             "fp32,bf16,fp16,bf16:0:compile (batch 0 = auto)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = default")
    parser.add_argument("--rounds", type=int, default=1, help="alternate runs, keep the fastest")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    configs = []
    for spec in filter(None, args.configs.split(",")):
        precision, batch, compile_ = (spec.split(":") + ["", "", ""])[:3]
        configs.append({"precision": resolve_precision(precision, device) if precision == "auto"
                        else precision, "batch": int(batch or 0),
                        "compile": compile_ == "compile",
                        "label": " (service default)" if precision == "auto" else ""})
    print(f"model stage: htdemucs configuration (random weights), {args.seconds:g} s stereo "
          f"44.1 kHz, overlap 0.25, no shifts, on {device_name(device)}, torch {torch.__version__}")
    rows = compare(build_model(), test_signal(args.seconds), device, configs, rounds=args.rounds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(jsonable({
            "device": device_name(device), "seconds": args.seconds, "rounds": args.rounds,
            "rows": rows}), indent=2))


if __name__ == "__main__":
    main()
