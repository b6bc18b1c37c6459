"""RoFormer model stage side by side: the reference pipeline (python-audio-separator 0.47.1's
own BS-RoFormer network and `MDXCSeparator.demix` chunking, tests/roformer_reference.py) against
the worker's (worker/separation/chunking.py), same checkpoint and input.

    python -m scripts.bench.bench_roformer speed                       # one chunk, released size
    python -m scripts.bench.bench_roformer speed --rounds 2 \
        --pipelines reference,auto,reference+heap      # interleaved; the heap setting alone
    python -m scripts.bench.bench_roformer memory --seconds 60 600     # peak memory by song length

The network has the released BS-RoFormer configuration (dim 512, depth 12, 62 bands, hop 441,
dim_t 801: chunks of 8 s) with random weights: compute does not depend on the weight values,
and no weights can be downloaded here. Each speed run is a fresh process (CPU seconds of its
own; the heap setting of worker/separation/heap.py is process-wide), rounds interleaved so
that a shared machine's load falls on both pipelines. The memory run uses a small network of
the same shape (dim 32, depth 1: same STFT, bands and 8 s chunks) so that 600 s fit in
minutes on two shared cores: the buffers that could grow with the song are the same whatever
the network's size.
Needs audio-separator (installed by `make test`), as the tests do.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from scripts.bench.bench_model import SAMPLERATE, device_name, snr_db, test_signal
from tests.roformer_reference import reference_demix, reference_network
from worker.separation import heap
from worker.separation.chunking import ChunkedModel, chunk_starts
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


PIPELINES = {"reference": "reference (audio-separator demix) fp32",
             "reference+heap": "reference fp32, freed memory kept (as ours)",
             "auto": "ours, service default", "fp32": "ours fp32", "bf16": "ours bf16"}


def run_one(pipeline: str, seconds: float, model: dict, out: Path) -> None:
    """In a fresh process: one pipeline over the mix; its stems to `out`, its clocks printed."""
    reference, ours, config = build(model)
    mix = 0.25 * test_signal(seconds)  # a song's level, below the reference's 0.9 limiter
    precision = "fp32"
    if pipeline.startswith("reference"):
        if pipeline == "reference+heap":
            heap.retain()
        clocks = _clocks()
        expected = reference_demix(reference, mix.numpy(), config.chunk, config.overlap,
                                   ["vocals"], "vocals")
        stems = torch.stack([torch.from_numpy(expected["primary"]),
                             torch.from_numpy(expected["secondary"])])
    else:
        runner = ChunkedModel(ours, config, "cpu", pipeline)
        precision, clocks = runner.precision, _clocks()
        stems = runner.separate(mix)
    took, cpu = _since(clocks)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    torch.save(stems, out)
    print(json.dumps({"seconds": took, "cpu_seconds": cpu, "precision": precision,
                      "user_seconds": usage.ru_utime - clocks[2],
                      "system_seconds": usage.ru_stime - clocks[3],
                      "peak_mib": usage.ru_maxrss // 1024}))


def speed(seconds: float, pipelines: list[str], rounds: int, model: dict) -> dict:
    """Each pipeline in its own process, interleaved round by round (reference, ours,
    reference, ours: a shared machine's load falls on both); SNR against the reference."""
    runs: dict[str, list[dict]] = {name: [] for name in pipelines}
    with tempfile.TemporaryDirectory() as folder:
        for index in range(rounds):
            for name in pipelines:
                out = Path(folder) / f"{name}-{index}.pt"
                done = subprocess.run(
                    [sys.executable, "-m", "scripts.bench.bench_roformer", "_run", name,
                     "--seconds", str(seconds), "--dim", str(model["dim"]), "--depth",
                     str(model["depth"]), "--out", str(out)],
                    capture_output=True, text=True, check=True)
                run = json.loads(done.stdout.splitlines()[-1])
                if not name.startswith("reference"):
                    expected = torch.load(Path(folder) / f"{pipelines[0]}-0.pt")
                    got = torch.load(out)
                    run["snr_db"] = min(snr_db(expected[i], got[i]) for i in range(2))
                runs[name].append(run)
                print(f"  round {index + 1}: {_line(name, run)}", flush=True)
    rows = [_row(name, runs[name], runs[pipelines[0]]) for name in pipelines]
    print("  mean of the rounds, speed-up against the first pipeline:")
    for row in rows:
        print(f"    {row['name']:<46} wall {row['seconds']:7.1f} s {row['speedup']:5.2f}x  "
              f"CPU {row['cpu_seconds']:7.1f} s {row['cpu_speedup']:5.2f}x"
              + (f"  SNR {row['snr_db']:.1f} dB" if "snr_db" in row else ""), flush=True)
    chunks = len(chunk_starts(int(seconds * SAMPLERATE), 441 * (DIM_T - 1),
                              441 * (DIM_T - 1) // OVERLAP))
    return {"device": device_name(torch.device("cpu")), "song_seconds": seconds,
            "chunks": chunks, "dim": model["dim"], "depth": model["depth"], "rows": rows,
            "runs": runs}


def _row(name: str, runs: list[dict], baseline: list[dict]) -> dict:
    """The mean of a pipeline's rounds, and its speed-up over the baseline's mean."""
    def mean(rows: list[dict], key: str) -> float:
        return sum(row[key] for row in rows) / len(rows)

    row = {"name": f"{PIPELINES[name]} ({runs[0]['precision']})", "rounds": len(runs)}
    for key in ("seconds", "cpu_seconds", "user_seconds", "system_seconds"):
        row[key] = round(mean(runs, key), 2)
    row["speedup"] = round(mean(baseline, "seconds") / row["seconds"], 2)
    row["cpu_speedup"] = round(mean(baseline, "cpu_seconds") / row["cpu_seconds"], 2)
    row["peak_mib"] = max(run["peak_mib"] for run in runs)
    if "snr_db" in runs[0]:
        row["snr_db"] = round(min(run["snr_db"] for run in runs), 1)
    return row


def _clocks() -> tuple[float, float, float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), time.process_time(), usage.ru_utime, usage.ru_stime


def _since(clocks: tuple[float, ...]) -> tuple[float, float]:
    """Wall and CPU seconds since `clocks`: on a shared machine the CPU seconds (all threads)
    are the work done, the wall seconds also the waiting for other processes."""
    return time.perf_counter() - clocks[0], time.process_time() - clocks[1]


def _line(name: str, run: dict) -> str:
    snr = f"  SNR {run['snr_db']:.1f} dB" if "snr_db" in run else ""
    return (f"{name:<15} wall {run['seconds']:7.1f} s  CPU {run['cpu_seconds']:7.1f} s "
            f"(user {run['user_seconds']:6.1f}, system {run['system_seconds']:6.1f})  "
            f"peak {run['peak_mib']} MiB{snr}")


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
    parser.add_argument("what", choices=["speed", "memory", "_peak", "_run"])
    parser.add_argument("pipeline", nargs="?", choices=list(PIPELINES), help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, nargs="+", default=[8.0],
                        help="speed: the mix (8 s: one chunk); memory: song lengths")
    parser.add_argument("--pipelines", default="reference,auto",
                        help=f"speed: comma-separated, the first is the baseline; "
                             f"of {', '.join(PIPELINES)} (auto, fp32, bf16: DEMUCS_PRECISION)")
    parser.add_argument("--rounds", type=int, default=1, help="speed: interleaved rounds")
    parser.add_argument("--dim", type=int, default=RELEASED["dim"], help="speed: network width")
    parser.add_argument("--depth", type=int, default=RELEASED["depth"], help="speed: blocks")
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args()
    model = {**RELEASED, "dim": args.dim, "depth": args.depth}
    if args.what == "_peak":
        peak_of_one(args.seconds[0])
        return
    if args.what == "_run":
        run_one(args.pipeline, args.seconds[0], model, args.out)
        return
    if args.what == "speed":
        print(f"RoFormer model stage: BS-RoFormer dim {args.dim}, depth {args.depth} "
              f"(released: 512, 12; random weights), "
              f"{args.seconds[0]:g} s stereo, num_overlap {OVERLAP}, CPU "
              f"({torch.get_num_threads()} threads, auto = "
              f"{resolve_precision('auto', torch.device('cpu'))})", flush=True)
        result = speed(args.seconds[0], args.pipelines.split(","), args.rounds, model)
    else:
        result = memory(args.seconds)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
