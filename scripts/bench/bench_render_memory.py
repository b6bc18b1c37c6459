"""Peak resident memory of one render job (the render worker and its pool) by song length.

    python -m scripts.bench.bench_render_memory                       # mp3-320, 60 / 600 s
    python -m scripts.bench.bench_render_memory --seconds 60 600 1800 --rendition wav-16

A fresh `python -m worker.render` (RENDER_PROCESSES=2) against real Redis and S3 servers
renders one song's four lossless stems, stored as a separation leaves them; the figure is the
largest sum of the resident sets of the worker and its pool processes, sampled every 50 ms,
less nothing (interpreters and libraries included). Stems are a 60 s synthetic song repeated.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
import time
from pathlib import Path

from common import flac, tracks
from scripts.bench.bench import RESULTS
from scripts.local import stack
from scripts.local.make_samples import synthesize

RATE = 44100
MODEL = "demucs_unittest"
STEMS = list(tracks.FOUR_STEMS)


def lossless_stem(seconds: int, seed: int) -> bytes:
    """A stem as the separation worker stores it (common/flac.py), written a minute at a
    time."""
    minute = (synthesize(60, seed=seed) / 3).T.astype("f4")
    out = io.BytesIO()
    with flac.writer(out, RATE, 2) as stem:
        for _ in range(seconds // 60):
            flac.write_block(stem, minute.copy())
    return out.getvalue()


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1]) * 4096
            with open(f"/proc/{current}/task/{current}/children") as children:
                todo += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def measure(env: dict, scratch: Path, seconds: int, rendition: str) -> dict:
    """Store the stems, hand the song to a fresh render worker, sample its memory until done."""
    from common.jobs import JobStatus, JobStore, render_id
    from common.redisconn import connect
    from common.settings import Settings
    from common.storage import Storage

    settings = Settings.from_env(env)
    jobs, storage = JobStore(connect(settings), settings.default_model), Storage(settings)
    song = f"{seconds:064x}"
    for n, stem in enumerate(STEMS):
        storage.put_lossless(song, MODEL, stem, lossless_stem(seconds, seed=n))
    jobs.register_model(MODEL, STEMS)
    jobs.enqueue(song, None, 100, model=MODEL, rendition=rendition)
    job_id = jobs.claim("bench", 1, queue=jobs.queue_for(MODEL))
    token = jobs.start(job_id, "bench")
    render = render_id(song, MODEL, rendition)
    jobs.hand_off(job_id, "bench", token, song, render, {})
    worker = stack.start_render({**env, "RENDER_PROCESSES": "2", "WORKER_ID": "bench-render"},
                                scratch / f"render-{seconds}.log")
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(worker.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        while (job := jobs.get(render)) is None or job.status not in (JobStatus.DONE,
                                                                      JobStatus.FAILED):
            time.sleep(0.2)
    finally:
        done.set()
        sampler.join()
        stack.stop(worker)
        stack.kill_group(worker)
    if job.status is not JobStatus.DONE:
        raise RuntimeError(f"render failed: {job.error}")
    return {"song_seconds": seconds, "rendition": rendition, "peak_mb": round(peak[0] / 2**20),
            "wall_s": round(time.monotonic() - started, 1), "timings": job.timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, nargs="+", default=[60, 600])
    parser.add_argument("--rendition", default="mp3-320")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench-render-memory.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-render-") as folder:
        scratch = Path(folder)
        with stack.stores(scratch) as env:
            for seconds in args.seconds:
                rows.append(measure(env, scratch, seconds, args.rendition))
                print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print("peak_mb " + " ".join(f"{r['song_seconds']}s={r['peak_mb']}" for r in rows))


if __name__ == "__main__":
    main()
