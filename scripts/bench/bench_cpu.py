"""CPU choices measured: one htdemucs segment through the model per precision, threads, batch.

    python -m scripts.bench.bench_cpu [--rounds 5] [--configs fp32:2:1,bf16:2:1,...]

Each config is precision:threads:batch[:silence]. Configs run interleaved, round after round,
and the minimum per segment is reported beside the median: on a shared machine the minimum is
the figure least disturbed by other processes. This is how the CPU defaults in
worker/separation/batched.py and worker/separation/separator.py were chosen (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from scripts.bench import bench_model
from worker.separation.batched import PRECISIONS

DEFAULT = "fp32:2:1,bf16:2:1,fp32:1:1,bf16:1:1,fp32:2:2,bf16:2:2,fp32:2:1:silence,bf16:2:1:silence"


def forward(model, batch: torch.Tensor, precision: str) -> None:
    dtype = PRECISIONS[precision]
    autocast = torch.autocast("cpu", dtype=dtype) if dtype is not None else nullcontext()
    with torch.inference_mode(), autocast:
        model(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--configs", default=DEFAULT)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = bench_model.build_model()
    length = int(model.segment * bench_model.SAMPLERATE)
    music = bench_model.test_signal(2 * length / bench_model.SAMPLERATE)
    configs = {}
    for spec in args.configs.split(","):
        precision, threads, batch, *rest = spec.split(":")
        if rest == ["silence"]:
            inputs = torch.zeros(int(batch), 2, length)
        else:
            inputs = torch.stack([music[:, i * 997:i * 997 + length] for i in range(int(batch))])
        configs[spec] = (precision, int(threads), inputs)
    times: dict[str, list[float]] = {spec: [] for spec in configs}
    for precision, threads, inputs in configs.values():  # untimed first pass
        torch.set_num_threads(threads)
        forward(model, inputs, precision)
    for number in range(args.rounds):
        for spec, (precision, threads, inputs) in configs.items():
            torch.set_num_threads(threads)
            started = time.perf_counter()
            forward(model, inputs, precision)
            times[spec].append((time.perf_counter() - started) / inputs.shape[0])
        with open("/proc/loadavg") as handle:
            print(f"round {number + 1}/{args.rounds}, load {handle.read().split()[0]}", flush=True)
    print("precision:threads:batch[:input]  seconds per 7.8 s segment: min, median, all")
    rows = {}
    for spec, values in times.items():
        rows[spec] = {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
                      "all": [round(value, 3) for value in values]}
        print(f"  {spec:<22} {rows[spec]['min']:6.2f} {rows[spec]['median']:6.2f}  "
              f"{rows[spec]['all']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
