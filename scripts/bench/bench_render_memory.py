"""Peak resident memory of render jobs (the render worker and its pool) by song length.

    python -m scripts.bench.bench_render_memory                       # mp3-320, 60 / 600 s
    python -m scripts.bench.bench_render_memory --seconds 60 600 1800 --rendition wav-16
    python -m scripts.bench.bench_render_memory --seconds 60 60 1800 \
        --rendition mp3-320 analysis peaks wav-16       # a whole song's render jobs, in order

A fresh `python -m worker.render` (RENDER_PROCESSES=2) against real Redis and S3 servers makes
each operation in turn from one song's four lossless stems, stored as a separation leaves them.
Figures: the largest sum of the resident sets of the worker and its pool processes, sampled
every 50 ms, less nothing (interpreters and libraries included); the worker's own VmHWM and the
largest VmHWM of a pool process. Stems are a 60 s synthetic song repeated.
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


def resident_bytes(pid: int) -> int:
    """Resident bytes of a live process."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def high_water_mb(pid: int) -> float:
    """VmHWM of a live process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def descendants(pid: int) -> list[int]:
    """A process's children, their children, and so on."""
    found, todo = [], [pid]
    while todo:
        try:
            children = Path(f"/proc/{todo.pop()}/task").glob("*/children")
            new = [int(child) for path in children for child in path.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        found += new
        todo += new
    return found


class TreePeak(threading.Thread):
    """The largest summed resident set of a process tree, and each process's last VmHWM."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.hwm = pid, 0, {}
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.wait(0.05):
            total = 0
            for pid in [self.pid, *descendants(self.pid)]:
                try:  # a pool process's VmHWM is lost when it exits: keep the last one read
                    total += resident_bytes(pid)
                    self.hwm[pid] = high_water_mb(pid)
                except (FileNotFoundError, ProcessLookupError, StopIteration):
                    continue
            self.peak = max(self.peak, total)

    def stop(self) -> dict:
        self.done.set()
        self.join()
        pool = [mb for pid, mb in self.hwm.items() if pid != self.pid]
        return {"sum_peak_mb": round(self.peak / 2**20),
                "largest_process_hwm_mb": round(max(self.hwm.values(), default=0)),
                "worker_hwm_mb": round(self.hwm.get(self.pid, 0)),
                "largest_pool_hwm_mb": round(max(pool, default=0))}


def measure(env: dict, scratch: Path, seconds: int, renditions: list[str]) -> dict:
    """Store the stems, hand the song to a fresh render worker, ask for each operation once
    the one before is done, and sample the worker's memory until the last is done."""
    from common.jobs import JobStatus, JobStore, render_id
    from common.redisconn import connect
    from common.settings import Settings
    from common.storage import Storage

    settings = Settings.from_env(env)
    jobs, storage = JobStore(connect(settings), settings.default_model), Storage(settings)
    song = f"{seconds:032x}{time.time_ns():032x}"  # a new song each run: none of it stored
    for n, stem in enumerate(STEMS):
        storage.put_lossless(song, MODEL, stem, lossless_stem(seconds, seed=n))
    jobs.register_model(MODEL, STEMS)
    jobs.enqueue(song, None, 100, model=MODEL, rendition=renditions[0])
    job_id = jobs.claim("bench", 1, queue=jobs.queue_for(MODEL))
    token = jobs.start(job_id, "bench")
    jobs.hand_off(job_id, "bench", token, song, render_id(song, MODEL, renditions[0]), {})
    worker = stack.start_render({**env, "RENDER_PROCESSES": "2", "WORKER_ID": "bench-render"},
                                scratch / f"render-{seconds}.log")
    peak = TreePeak(worker.pid)
    started, timings = time.monotonic(), {}
    try:
        for n, rendition in enumerate(renditions):
            if n:
                jobs.request_rendition(song, MODEL, rendition)
            render = render_id(song, MODEL, rendition)
            while (job := jobs.get(render)) is None or job.status not in (JobStatus.DONE,
                                                                          JobStatus.FAILED):
                time.sleep(0.2)
            if job.status is not JobStatus.DONE:
                raise RuntimeError(f"render {rendition} failed: {job.error}")
            timings[rendition] = job.timings
    finally:
        figures = peak.stop()
        stack.stop(worker)
        stack.kill_group(worker)
    return {"song_seconds": seconds, "rendition": " ".join(renditions),
            "peak_mb": figures["sum_peak_mb"], **figures,
            "wall_s": round(time.monotonic() - started, 1), "timings": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, nargs="+", default=[60, 600])
    parser.add_argument("--rendition", nargs="+", default=["mp3-320"],
                        help="operations made in turn by the one worker (renditions, peaks, "
                             "analysis)")
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
    for key in ("peak_mb", "worker_hwm_mb", "largest_pool_hwm_mb"):
        print(f"{key} " + " ".join(f"{r['song_seconds']}s={r[key]}" for r in rows))


if __name__ == "__main__":
    main()
