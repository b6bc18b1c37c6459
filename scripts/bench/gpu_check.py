"""Every open GPU question in one run: `scripts/bench/gpu-check` (see BENCHMARKS.md, "GPU check").

    scripts/bench/gpu-check                              # on a CUDA machine: about 5 minutes
    scripts/bench/gpu-check --allow-cpu --seconds 8      # the CPU rehearsal `make test` runs

1. Model stage: stock `apply_model` fp32 against the service's batched fp32, bf16, fp16 and
   compiled bf16, each with its agreement with stock fp32 and its peak device memory.
2. The worker's own Separator on one song: the batch it picks from free memory, then again
   with device memory capped so that the out-of-memory back-off must halve the batch; the
   stems must agree (>= 60 dB in fp32) and each halving must be logged.
3. torch.compile: the first warm-up with an empty cache, then in a second process with the
   cache the first wrote.
4. The device's busy fraction over several songs back to back, when the songs' stems are
   written as FLAC on a few cores (rendering apart) against encoded to mp3 (rendering inside).
5. A BS-RoFormer of the released size served from N.yaml + N.ckpt: fp32 against the reference
   pipeline (>= 60 dB), bf16, fp16 and compiled bf16 (scripts/bench/gpu_check_roformer.py).

The model is HTDemucs in the released htdemucs configuration with random weights (compute does
not depend on the weights); the CPU rehearsal uses a small HTDemucs. On the CPU, a memory cap
cannot be set, so step 2 emulates it: forward passes of more segments than the cap holds raise
torch.cuda.OutOfMemoryError, as CUDA would. The report goes to --json; the last line printed
sums it up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import torch
from demucs.htdemucs import HTDemucs

from common.settings import Settings
from scripts.bench import bench_model, gpu_busy, gpu_check_roformer
from worker.separation.separator import Separator

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "htdemucs_random"
SMALL_KWARGS = dict(sources=bench_model.SOURCES, segment=Fraction(1), channels=4, depth=4,
                    nfft=1024, t_layers=1, bottom_channels=16, dconv_mode=0)


def model_kwargs(small: bool) -> dict:
    return SMALL_KWARGS if small else bench_model.HTDEMUCS_KWARGS


def write_model(folder: Path, small: bool) -> None:
    """`<MODEL_NAME>.th` in `folder`, loaded by the worker's own loader (DEMUCS_REPO)."""
    torch.manual_seed(0)
    kwargs = model_kwargs(small)
    model = HTDemucs(**kwargs).eval()
    torch.save({"klass": HTDemucs, "args": (), "kwargs": kwargs, "state": model.state_dict()},
               folder / f"{MODEL_NAME}.th")


def separator(folder: Path, device: torch.device, **env: str) -> Separator:
    """The worker's Separator, configured from the environment as the worker is."""
    settings = Settings.from_env({"DEMUCS_MODEL": MODEL_NAME, "DEMUCS_REPO": str(folder),
                                  "DEMUCS_DEVICE": str(device), **env})
    return Separator(settings)


def peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# -- 1. the model stage ---------------------------------------------------------------------
def model_stage(device: torch.device, seconds: float, small: bool) -> list[dict]:
    configs = [{"precision": "fp32", "once": True}, {"precision": "bf16"},
               {"precision": "fp16"}, {"precision": "bf16", "compile": True}]
    torch.manual_seed(0)
    model = HTDemucs(**model_kwargs(small)).eval()
    return bench_model.compare(model, bench_model.test_signal(seconds), device, configs)


# -- 2. the out-of-memory back-off ----------------------------------------------------------
class HalvingLog(logging.Handler):
    """Collects the worker's 'out of memory ... retrying with N' warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "out of" in record.getMessage() and "memory" in record.getMessage():
            self.lines.append(record.getMessage())


def cap_memory(runner, segments: int) -> None:
    """Leave room for `segments` segments per batch (plus the song's buffers) and no more."""
    device = runner.device
    if device.type == "cuda":
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        allowed = torch.cuda.memory_allocated(device) + (segments + 2) * runner.segment_bytes()
        torch.cuda.set_per_process_memory_fraction(min(1.0, allowed / total), device)
        return
    forward = runner._forward

    def emulated(model, batch, eager=False):
        if batch.shape[0] > segments:
            raise torch.cuda.OutOfMemoryError(f"emulated: {batch.shape[0]} segments > {segments}")
        return forward(model, batch, eager)

    runner._forward = emulated


def uncap_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()


def oom_backoff(folder: Path, device: torch.device, seconds: float) -> dict:
    """The Separator on one song as the worker runs it, then with memory capped."""
    batch = "0" if device.type == "cuda" else "8"  # on the CPU, 0 would mean one segment
    sep = separator(folder, device, DEMUCS_PRECISION="fp32", DEMUCS_BATCH=batch)
    song = gpu_busy.song(seconds, seed=1)
    chosen = sep.batched.batch
    reset_peak(device)
    started = time.perf_counter()
    free_run = sep.separate(song)
    free_s, free_peak = time.perf_counter() - started, peak_mib(device)
    halvings = HalvingLog()
    logging.getLogger("worker").addHandler(halvings)
    cap = max(1, chosen // 4)
    cap_memory(sep.batched, cap)
    reset_peak(device)
    started = time.perf_counter()
    try:
        capped_run = sep.separate(song)
        error = ""
    except Exception as failure:  # the check reports a failed back-off instead of stopping
        capped_run, error = None, f"{type(failure).__name__}: {failure}"
    capped_s, capped_peak = time.perf_counter() - started, peak_mib(device)
    uncap_memory(device)
    logging.getLogger("worker").removeHandler(halvings)
    snr = (min(bench_model.snr_db(free_run[name], capped_run[name]) for name in free_run)
           if capped_run is not None else None)
    stayed = sep.batched.device == sep.batched.home
    ok = capped_run is not None and bool(halvings.lines) and snr >= 60 and stayed
    return {"song_seconds": seconds, "batch_from_free_memory": chosen, "seconds": round(free_s, 3),
            "peak_mib": free_peak, "capped_to_segments": cap, "batch_after": sep.batched.batch,
            "capped_seconds": round(capped_s, 3), "capped_peak_mib": capped_peak,
            "halvings": halvings.lines, "stayed_on_device": stayed,
            "snr_db": None if snr is None else round(snr, 1), "error": error,
            "emulated": device.type != "cuda", "ok": ok}


# -- 3. compile warm-up, cold and cached ----------------------------------------------------
def compile_probe(device: torch.device, small: bool) -> dict:
    """In this process: the first compiled warm-up (child of `compile_warm_up`)."""
    torch.manual_seed(0)
    from worker.separation.batched import BatchedModel

    model = HTDemucs(**model_kwargs(small)).eval().to(device)
    runner = BatchedModel(model, device, "bf16", 0, compile=True)
    started = time.perf_counter()
    runner.warm_up()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"seconds": round(time.perf_counter() - started, 2), "compiled": runner.compiled,
            "batch": runner.batch, "peak_mib": peak_mib(device)}


def compile_warm_up(device: torch.device, small: bool) -> dict:
    """Two fresh processes sharing one new inductor cache: cold, then cached."""
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": cache,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        runs = []
        for _ in range(2):
            command = [sys.executable, "-m", "scripts.bench.gpu_check", "--compile-probe",
                       "--device", str(device)] + (["--small"] if small else [])
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                return {"error": done.stderr.strip().splitlines()[-1:], "ok": False}
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"first": runs[0], "cached": runs[1], "ok": True}


# -- the report -----------------------------------------------------------------------------
def summary(report: dict) -> str:
    rows = {row["name"]: row for row in report["model_stage"]}
    bf16 = next((row for name, row in rows.items()
                 if row.get("precision") == "bf16" and not row.get("compiled")), {})
    compiled = report["compile"]
    busy = report["busy"]
    return (f"gpu_model_speedup={bf16.get('speedup')} bf16_snr_db={bf16.get('snr_db')} "
            f"oom_backoff={'ok' if report['oom_backoff']['ok'] else 'failed'} "
            f"compile_first_s={compiled.get('first', {}).get('seconds')} "
            f"compile_cached_s={compiled.get('cached', {}).get('seconds')} "
            f"busy={busy['apart']['busy']} busy_inside={busy['inside']['busy']} "
            f"roformer={'ok' if report['roformer']['ok'] else 'failed'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allow-cpu", action="store_true", help="rehearse on the CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=240, help="length of each song")
    parser.add_argument("--songs", type=int, default=0, help="songs for the busy fraction "
                        "(default 8 on CUDA, 2 on the CPU)")
    parser.add_argument("--write-cores", type=int, default=4, help="cores writing stems")
    parser.add_argument("--small", action="store_true", help="a small HTDemucs (CPU default)")
    parser.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "gpu-check.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    small = args.small or device.type != "cuda"
    if args.compile_probe:
        print(json.dumps(compile_probe(device, small)))
        return 0
    if device.type != "cuda" and not args.allow_cpu:
        print("gpu-check: torch sees no CUDA device (pass --allow-cpu to rehearse on the CPU)",
              file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    name = bench_model.device_name(device)
    print(f"gpu-check on {name}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"{'small HTDemucs' if small else 'htdemucs configuration'}, {args.seconds:g} s songs")
    report: dict = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
                    "small_model": small, "seconds": args.seconds}
    print("1. model stage")
    report["model_stage"] = model_stage(device, args.seconds, small)
    with tempfile.TemporaryDirectory(prefix="gpu-check-models-") as models:
        write_model(Path(models), small)
        print("2. the worker's separator, then with memory capped")
        report["oom_backoff"] = oom_backoff(Path(models), device, args.seconds)
        print(f"  {report['oom_backoff']}")
        print("3. torch.compile warm-up: empty cache, then cached, in fresh processes")
        report["compile"] = compile_warm_up(device, small)
        print(f"  {report['compile']}")
        print("4. busy fraction: FLAC written apart against mp3 encoded inside")
        songs = args.songs or (8 if device.type == "cuda" else 2)
        report["busy"] = {
            how: gpu_busy.busy_fraction(separator(Path(models), device), args.seconds, songs,
                                        how, args.write_cores)
            for how in ("apart", "inside")}
        print(f"  {report['busy']}")
    print("5. a BS-RoFormer from N.yaml + N.ckpt: reference fp32, then ours")
    report["roformer"] = gpu_check_roformer.roformer_check(device, args.seconds, small)
    report["summary"] = summary(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(bench_model.jsonable(report), indent=2))
    print(f"report: {args.json}")
    print(report["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
