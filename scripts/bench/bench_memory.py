"""Peak resident memory of the worker's separation (worker/separation/lossless.py) by song length.

    python -m scripts.bench.bench_memory                           # htdemucs, 60 / 600 / 1800 s
    python -m scripts.bench.bench_memory --seconds 60 600 --model small --stop-after 0

Each song is separated in a fresh process, from the upload in a real S3 server to four FLAC
stems stored there, exactly as a separation job runs it; the figure is that process's peak
resident set (ru_maxrss), model included. Songs are a 60 s synthetic mp3 repeated.

`--stop-after N` cancels each song after N segments (as a cancel does: progress raises): a quick
look only. A stopped run says nothing about memory by length: what a song holds between
segments (stretches being encoded, parts being sent, the allocator's free pages) settles only
after several segments, so a claim about length needs whole songs (`make bench` runs 60 s and
600 s here, and scripts/bench/bench_stack_memory.py whole processes under the local stack).
`--model small` is an HTDemucs with htdemucs's segment (7.8 s) and a fraction of its compute.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from scripts.bench import bench_model
from scripts.bench.bench import MODEL_NAME, MODELS, RESULTS, prepare_model
from scripts.local import stack
from scripts.local.make_samples import song_mp3

SMALL = dict(bench_model.HTDEMUCS_KWARGS, channels=8, depth=4, t_layers=1, bottom_channels=0,
             dconv_mode=1)


class Stop(Exception):
    """Raised by the progress callback after `--stop-after` segments."""


def prepare_small(folder: Path) -> str:
    """The small model as `<name>.th` in `folder`."""
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    model = HTDemucs(**SMALL)
    torch.save({"klass": HTDemucs, "args": (), "kwargs": SMALL, "state": model.state_dict()},
               folder / "htdemucs_small_random.th")
    return "htdemucs_small_random"


def child(args: argparse.Namespace) -> None:
    """One separation in this process; prints a JSON line of figures."""
    from common.settings import Settings
    from common.storage import Storage
    from worker.separation.lossless import separate_to_store
    from worker.separation.separator import Separator

    settings = Settings.from_env({**os.environ, "DEMUCS_MODEL": args.model_name,
                                  "DEMUCS_REPO": str(MODELS)})
    separator = Separator(settings)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    storage = Storage(settings)
    segments = [0]

    def progress(_fraction: float) -> None:
        segments[0] += 1
        if args.stop_after and segments[0] >= args.stop_after:
            raise Stop

    started = time.monotonic()
    try:
        timings = separate_to_store(separator, storage, "bench", args.object, args.model_name,
                                    max_seconds=4 * 3600, progress=progress)
    except Stop:
        timings = {"stopped_after_segments": segments[0]}
    timings["wall"] = round(time.monotonic() - started, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(json.dumps({"peak_mb": round(peak), "after_model_load_mb": round(loaded),
                      "segments": segments[0], "timings": timings}))


def measure(seconds: int, model_name: str, stop_after: int, env: dict, song: bytes,
            say) -> dict:
    from common.settings import Settings
    from common.storage import Storage

    storage = Storage(Settings.from_env(env))
    name = f"bench-{seconds}.mp3"
    data = song * (seconds // 60)
    storage.client.put_object(storage.songs_bucket, name, io.BytesIO(data), len(data))
    command = [sys.executable, "-m", "scripts.bench.bench_memory", "--child", "--object", name,
               "--model-name", model_name, "--stop-after", str(stop_after)]
    done = subprocess.run(command, env=env, cwd=stack.ROOT, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring process failed:\n{done.stderr[-3000:]}")
    row = {"song_seconds": seconds, **json.loads(done.stdout.strip().splitlines()[-1])}
    say(f"  {seconds:5d} s: peak {row['peak_mb']:5d} MB (model loaded: "
        f"{row['after_model_load_mb']} MB), {row['segments']} segments, {row['timings']}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, nargs="+", default=[60, 600, 1800])
    parser.add_argument("--model", choices=["htdemucs", "small"], default="htdemucs")
    parser.add_argument("--stop-after", type=int, default=0, help="segments; 0: whole song")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench-memory.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--object", help=argparse.SUPPRESS)
    parser.add_argument("--model-name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    prepare_model(MODELS)
    model_name = MODEL_NAME if args.model == "htdemucs" else prepare_small(MODELS)
    song = song_mp3(60, seed=5)
    print(f"peak resident memory of one separation job, {args.model} configuration, random "
          f"weights, fresh process per song" +
          (f", stopped after {args.stop_after} segments" if args.stop_after else ""))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
        port = stack.free_port()
        store = stack.start_object_store(port, Path(scratch) / "s3", Path(scratch) / "s3.log")
        try:
            env = stack.service_env(0, port, DEMUCS_REPO=str(MODELS))
            stack.create_buckets(env)
            for seconds in args.seconds:
                rows.append(measure(seconds, model_name, args.stop_after, env, song, print))
        finally:
            stack.stop(store)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "stop_after": args.stop_after,
                                    "rows": rows}, indent=2))
    first, last = rows[0]["peak_mb"], rows[-1]["peak_mb"]
    print(f"peak_mb={'/'.join(str(row['peak_mb']) for row in rows)} "
          f"longest_vs_shortest={last / first:.2f}")


if __name__ == "__main__":
    main()
