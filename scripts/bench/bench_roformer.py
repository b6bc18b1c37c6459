"""RoFormer model stage side by side: the reference pipeline (python-audio-separator 0.47.1's
own BS-RoFormer network and `MDXCSeparator.demix` chunking, tests/roformer_reference.py) against
the worker's (worker/separation/chunking.py), same checkpoint and input.

    python -m scripts.bench.bench_roformer speed --seconds 16          # released size, CPU
    python -m scripts.bench.bench_roformer memory --seconds 60 600     # peak memory by song length

The network has the released BS-RoFormer configuration (dim 512, depth 12, 62 bands, hop 441,
dim_t 801: chunks of 8 s) with random weights: compute does not depend on the weight values,
and no weights can be downloaded here. The memory run uses a small network of the same shape
(dim 32, depth 1: same STFT, bands and 8 s chunks) so that 600 s fit in minutes on two shared
cores: the buffers that could grow with the song are the same whatever the network's size.
Needs audio-separator (installed by `make test`), as the tests do.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from scripts.bench.bench_model import SAMPLERATE, device_name, snr_db, test_signal
from tests.roformer_reference import reference_demix, reference_network
from worker.separation.chunking import ChunkedModel
from worker.separation.device import resolve_precision
from worker.separation.msst_config import RoformerConfig

RELEASED = {"dim": 512, "depth": 12, "stereo": True, "num_stems": 1,
            "time_transformer_depth": 1, "freq_transformer_depth": 1,
            "freqs_per_bands": (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8
            + (128, 129), "dim_head": 64, "heads": 8, "stft_n_fft": 2048,
            "stft_hop_length": 441, "stft_win_length": 2048, "mask_estimator_depth": 2}
SMALL = {**RELEASED, "dim": 32, "depth": 1, "heads": 2, "dim_head": 16}
DIM_T, OVERLAP = 801, 2


def build(model: dict, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module, RoformerConfig]:
    """(reference network, our network with the same weights, our configuration)."""
    from worker.separation.roformer import BSRoformer

    torch.manual_seed(seed)
    reference = reference_network("bs_roformer", {**model, "flash_attn": True,
                                                  "attn_dropout": 0.0, "ff_dropout": 0.0})
    ours = BSRoformer(**model).eval()
    ours.load_state_dict(reference.state_dict())
    config = RoformerConfig("bs_roformer", dict(model), SAMPLERATE, 441 * (DIM_T - 1), OVERLAP,
                            1, ["vocals"], "vocals")
    return reference, ours, config


def speed(seconds: float, precisions: list[str], model: dict) -> dict:
    """Reference fp32, then ours in each precision, on one `seconds`-long mix; SNR vs reference."""
    reference, ours, config = build(model)
    mix = 0.25 * test_signal(seconds)  # a song's level, below the reference's 0.9 limiter
    clocks = _clocks()
    expected = reference_demix(reference, mix.numpy(), config.chunk, config.overlap,
                               ["vocals"], "vocals")
    reference_s, reference_cpu = _since(clocks)
    rows = [{"name": "reference (audio-separator demix) fp32", "seconds": round(reference_s, 2),
             "cpu_seconds": round(reference_cpu, 2), "speedup": 1.0, "cpu_speedup": 1.0}]
    print(_line(rows[-1]), flush=True)
    for setting in precisions:
        runner = ChunkedModel(ours, config, "cpu", setting)
        clocks = _clocks()
        out = runner.separate(mix)
        took, cpu = _since(clocks)
        snr = min(snr_db(torch.from_numpy(expected["primary"]), out[0]),
                  snr_db(torch.from_numpy(expected["secondary"]), out[1]))
        rows.append({"name": f"ours {runner.precision}"
                             f"{' (service default)' if setting == 'auto' else ''}",
                     "seconds": round(took, 2), "speedup": round(reference_s / took, 2),
                     "cpu_seconds": round(cpu, 2),
                     "cpu_speedup": round(reference_cpu / cpu, 2), "snr_db": round(snr, 1)})
        print(_line(rows[-1]), flush=True)
    return {"device": device_name(torch.device("cpu")), "song_seconds": seconds,
            "dim": model["dim"], "depth": model["depth"],
            "chunks": len(range(0, mix.shape[-1], config.chunk // OVERLAP)), "rows": rows}


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(clocks: tuple[float, float]) -> tuple[float, float]:
    """Wall and CPU seconds since `clocks`: on a shared machine the CPU seconds (all threads)
    are the work done, the wall seconds also the waiting for other processes."""
    return time.perf_counter() - clocks[0], time.process_time() - clocks[1]


def _line(row: dict) -> str:
    snr = f"  SNR {row['snr_db']} dB" if "snr_db" in row else ""
    return (f"  {row['name']:<42} {row['seconds']:8.2f} s {row['speedup']:6.2f}x  "
            f"CPU {row['cpu_seconds']:8.2f} s {row['cpu_speedup']:6.2f}x{snr}")


def peak_of_one(seconds: float) -> None:
    """In a fresh process: stream `seconds` of audio through the small network, print peak RSS."""
    _, ours, config = build(SMALL)
    runner = ChunkedModel(ours, config, "cpu", "auto")
    length = int(seconds * SAMPLERATE)

    def blocks() -> Iterator[torch.Tensor]:  # the song decoded a block at a time, as in a job
        generator = torch.Generator().manual_seed(0)
        for start in range(0, length, 2**16):
            n = min(2**16, length - start)
            yield 0.1 * torch.randn(2, n, generator=generator)

    emitted = sum(stretch.shape[-1] for stretch in runner.stream(blocks(), length))
    assert emitted == length
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


def memory(lengths: list[float]) -> dict:
    """Peak resident memory (MiB) of a whole streamed separation per song length."""
    rows = []
    for seconds in lengths:
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "scripts.bench.bench_roformer", "_peak",
                              "--seconds", str(seconds)], capture_output=True, text=True,
                             check=True)
        rows.append({"song_seconds": seconds, "peak_mib": int(out.stdout.split()[-1]),
                     "wall_seconds": round(time.perf_counter() - started, 1)})
        print(f"  {seconds:7.0f} s of audio: peak {rows[-1]['peak_mib']} MiB "
              f"({rows[-1]['wall_seconds']} s)", flush=True)
    return {"network": "BS-RoFormer dim 32, depth 1 (released shape otherwise)", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["speed", "memory", "_peak"])
    parser.add_argument("--seconds", type=float, nargs="+", default=[16.0])
    parser.add_argument("--precisions", default="auto,fp32",
                        help="ours in these DEMUCS_PRECISION values, comma-separated")
    parser.add_argument("--dim", type=int, default=RELEASED["dim"], help="speed: network width")
    parser.add_argument("--depth", type=int, default=RELEASED["depth"], help="speed: blocks")
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args()
    if args.what == "_peak":
        peak_of_one(args.seconds[0])
        return
    if args.what == "speed":
        model = {**RELEASED, "dim": args.dim, "depth": args.depth}
        print(f"RoFormer model stage: BS-RoFormer dim {args.dim}, depth {args.depth} "
              f"(released: 512, 12; random weights), "
              f"{args.seconds[0]:g} s stereo, num_overlap {OVERLAP}, CPU "
              f"({torch.get_num_threads()} threads, auto = "
              f"{resolve_precision('auto', torch.device('cpu'))})", flush=True)
        result = speed(args.seconds[0], args.precisions.split(","), model)
    else:
        result = memory(args.seconds)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
