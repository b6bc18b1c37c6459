"""scripts/bench/gpu-check, step 5: a BS-RoFormer of the released size (random weights), written as
`N.yaml` + `N.ckpt` into a models folder and served by the worker's own Separator.

- fp32 against the reference pipeline (audio-separator's network and demix, run on the same
  device in fp32): must agree to >= 60 dB per stem;
- the service default (bf16 on CUDA) and fp16, each with its agreement and speed-up over our
  fp32, the batch it picked from free memory and its peak device memory;
- compiled bf16 (one input shape: every chunk but a short song's), first song timed apart.

The CPU rehearsal uses a tiny network of the same shape. Needs audio-separator, as the tests.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from common.settings import Settings
from scripts.bench import bench_model, bench_roformer
from tests.roformer_reference import reference_demix, reference_network, write_model
from worker.separation.separator import Separator

NAME = "gpu_check_roformer"
TINY = {**bench_roformer.RELEASED, "dim": 16, "depth": 1, "heads": 2, "dim_head": 8}


def _stems(separator: Separator, mix: torch.Tensor) -> tuple[float, torch.Tensor]:
    if separator.device.type == "cuda":
        torch.cuda.synchronize(separator.device)
        torch.cuda.reset_peak_memory_stats(separator.device)
    started = time.perf_counter()
    out = separator.batched.separate(mix)
    if separator.device.type == "cuda":
        torch.cuda.synchronize(separator.device)
    return time.perf_counter() - started, out


def roformer_check(device: torch.device, seconds: float, small: bool) -> dict:
    """The rows of step 5 and whether fp32 met the reference."""
    model = TINY if small else bench_roformer.RELEASED
    mix = 0.25 * bench_model.test_signal(min(seconds, 60.0), seed=2)
    rows, ok = [], False
    with tempfile.TemporaryDirectory(prefix="gpu-check-roformer-") as folder:
        section = write_model(Path(folder), NAME, "bs_roformer", instruments=["vocals", "other"],
                              target="vocals", dim_t=bench_roformer.DIM_T,
                              overlap=bench_roformer.OVERLAP, **model)
        reference = reference_network("bs_roformer", section).to(device)
        reference.load_state_dict(torch.load(Path(folder) / f"{NAME}.ckpt", weights_only=True))
        started = time.perf_counter()
        expected = reference_demix(reference, mix.numpy(), 441 * (bench_roformer.DIM_T - 1),
                                   bench_roformer.OVERLAP, ["vocals"], "vocals", device=device)
        rows.append({"name": "reference fp32", "seconds": round(time.perf_counter() - started, 3)})
        del reference
        ours_fp32 = None
        for precision, compile_ in [("fp32", False), ("auto", False), ("fp16", False),
                                    ("bf16", True)]:
            settings = Settings.from_env({
                "DEMUCS_MODEL": NAME, "DEMUCS_MODELS": NAME, "MODELS_DIR": folder,
                "DEMUCS_DEVICE": str(device), "DEMUCS_PRECISION": precision,
                "DEMUCS_COMPILE": "1" if compile_ else "0"})
            separator = Separator(settings)
            took, out = _stems(separator, mix)
            if ours_fp32 is None:
                ours_fp32, fp32_s = out, took
            snr = min(bench_model.snr_db(torch.from_numpy(expected["primary"]), out[0]),
                      bench_model.snr_db(torch.from_numpy(expected["secondary"]), out[1]))
            runner = separator.batched
            rows.append({"name": f"ours {runner.precision}", "precision": runner.precision,
                         "batch": runner.batch, "compiled": runner.compiled,
                         "seconds": round(took, 3), "speedup_over_fp32": round(fp32_s / took, 2),
                         "snr_db": round(snr, 1), "peak_mib": _peak(device)})
            print(f"  {rows[-1]}", flush=True)
            ok = ok or (precision == "fp32" and snr >= 60)
            del separator
    return {"song_seconds": mix.shape[-1] / bench_model.SAMPLERATE, "tiny": small,
            "rows": rows, "ok": ok}


def _peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
