"""Peak resident memory of the separation worker and of the render worker with its pool, under
the local stack, by song length: whole songs, whole processes.

    python -m scripts.bench.bench_stack_memory                     # 60 / 600 / 1800 s
    python -m scripts.bench.bench_stack_memory --seconds 60 600

Redis, the S3 server and the gateway (gunicorn) run as `python -m scripts.local.stack up` starts
them; for each song a fresh separation worker (demucs_unittest, one segment per pass) and a
fresh render worker (RENDER_PROCESSES=2) are started, so that each figure is that song's alone.
The song, a 60 s synthetic mp3 repeated, is submitted as a multipart upload and run to the
end: separated into lossless stems, its default mp3 rendition made, then a wav rendition asked
for by downloading one of its tracks (every stem rendered once in each format). Figures:

- separation worker: its VmHWM (the kernel's high-water mark of the resident set) at the end;
- render worker: the largest sum of the resident sets of the worker and its pool processes,
  sampled every 50 ms (a sum: the pool's processes encode at once), and the largest VmHWM
  of any one of them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import requests

from scripts.bench.bench import RESULTS
from scripts.bench.bench_render_memory import TreePeak, high_water_mb
from scripts.local import stack
from scripts.local.make_samples import song_mp3

MODEL = "demucs_unittest"
WAV_TRACK = "drums.wav?bits=16"


def wait_until(check, timeout: float, what: str):
    """Poll `check()` every 0.5 s until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise TimeoutError(f"{what} after {timeout:.0f} s")


def song_status(base: str, song_hash: str) -> dict | None:
    """The song's status once final; raises if it failed."""
    answer = requests.get(f"{base}/apiv1/status/{song_hash}", timeout=30).json()
    if answer["status"] == "failed":
        raise RuntimeError(f"song {song_hash} failed: {answer}")
    return answer if answer["status"] == "done" else None


def wav_stored(base: str, song_hash: str) -> bool:
    """Ask for a wav track (the first ask queues its rendition); whether it is stored."""
    answer = requests.get(f"{base}/apiv1/track/{song_hash}/{WAV_TRACK}", timeout=60,
                          stream=True)
    answer.close()
    if answer.status_code not in (200, 202):
        raise RuntimeError(f"wav track: {answer.status_code} {answer.text[:300]}")
    return answer.status_code == 200


def measure(env: dict, base: str, scratch: Path, seconds: int, song: bytes) -> dict:
    """One song through fresh workers; their peaks and the stages' wall times."""
    since = time.time()
    worker_env = {**env, "WORKER_ID": f"bench-worker-{seconds}"}
    render_env = {**env, "WORKER_ID": f"bench-render-{seconds}", "RENDER_PROCESSES": "2"}
    worker = stack.start_worker(worker_env, scratch / f"worker-{seconds}.log")
    render = stack.start_render(render_env, scratch / f"render-{seconds}.log")
    try:
        for name in (worker_env["WORKER_ID"], render_env["WORKER_ID"]):
            wait_until(lambda n=name: stack.worker_ready(env["REDIS_URL"], n, since), 300,
                       f"{name} not ready")
        render_peak = TreePeak(render.pid)
        started = time.monotonic()
        answer = requests.post(f"{base}/apiv1/separate", timeout=600,
                               files={"file": (f"song-{seconds}.mp3", song)})
        answer.raise_for_status()
        song_hash = answer.json()["hash"]
        wait_until(lambda: song_status(base, song_hash), 4 * 3600, "separation")
        separated = time.monotonic()
        wait_until(lambda: wav_stored(base, song_hash), 3600, "wav rendition")
        row = {"song_seconds": seconds, "worker_hwm_mb": round(high_water_mb(worker.pid)),
               **{f"render_{k}": v for k, v in render_peak.stop().items()},
               "separated_and_mp3_s": round(separated - started),
               "wav_s": round(time.monotonic() - separated)}
        requests.delete(f"{base}/apiv1/song/{song_hash}", timeout=60)
        return row
    finally:
        for process in (worker, render):
            stack.stop(process)
            stack.kill_group(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, nargs="+", default=[60, 600, 1800])
    parser.add_argument("--out", type=Path, default=RESULTS / "bench-stack-memory.json")
    args = parser.parse_args()
    minute = song_mp3(60, seed=5)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as folder:
        scratch = Path(folder)
        with stack.stores(scratch, DEMUCS_MODEL=MODEL, DEMUCS_MODELS=MODEL,
                          DEFAULT_MODEL=MODEL) as env:
            rest_port = stack.free_port()
            rest = stack.start_rest(rest_port, env, scratch / "rest.log")
            try:
                base = f"http://127.0.0.1:{rest_port}"
                for seconds in args.seconds:
                    rows.append(measure(env, base, scratch, seconds, minute * (seconds // 60)))
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                stack.stop(rest)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    for key in ("worker_hwm_mb", "render_sum_peak_mb"):
        figures = [row[key] for row in rows]
        print(f"{key} " + " ".join(f"{r['song_seconds']}s={r[key]}" for r in rows) +
              f" longest_vs_shortest={figures[-1] / figures[0]:.2f}")


if __name__ == "__main__":
    main()
