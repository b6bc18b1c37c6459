"""Stock Demucs and this service side by side: same model, same songs, one run.

    python -m scripts.bench.bench                     # about 9 minutes on a 2-core CPU
    python -m scripts.bench.bench --rounds 1 --songs 2 --seconds 12    # shorter
    python -m scripts.bench.bench --cli-one-call      # also the CLI given all songs at once

1. Model stage: stock `apply_model` (shifts=0) against worker/separation/batched.py
   (scripts/bench/bench_model.py); then the RoFormer row: the reference pipeline (audio-separator's
   BS-RoFormer and demix, fp32) against worker/separation/chunking.py in the default precision
   (scripts/bench/bench_roformer.py), dim 256 and depth 6 unless --roformer-released (512, 12).
2. End to end, one 60 s mp3: the stock CLI (`python -m demucs.separate --mp3`, a fresh process
   that loads the model) against the local stack (REST in, worker with the model loaded, stems
   downloaded), with the job's own stage timings.
3. Throughput: N songs submitted at once to one worker, against the CLI run once per song (the
   headline) and, with --cli-one-call, the CLI given all N files in one call.
4. Busy fraction (`--busy-only`: this stage alone): for one song, the separation worker's
   model seconds over the seconds it holds the song, with rendering apart (it stores FLAC
   stems; the render worker encodes the mp3s) and with rendering inside it (the render job's
   encoding and storing seconds in place of storing the FLAC stems).

Stages 1 and 2 alternate stock and ours for --rounds rounds and keep each side's fastest: on a
shared machine that is the run least disturbed by other processes. The load average is logged.

The model is the htdemucs configuration with random weights (fixed seed) in a local model folder
under .run/bench-models/; compute does not depend on the weight values. Full results go to
bench-results/bench.json; the last line printed is the summary.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import torch

from common.jobs import JobStore, Kind
from common.redisconn import connect
from common.settings import Settings
from scripts.bench import bench_model, bench_roformer
from scripts.local import stack
from scripts.local.make_samples import song_mp3

ROOT = stack.ROOT
MODEL_NAME = "htdemucs_random"
MODELS = ROOT / ".run" / "bench-models"
RESULTS = ROOT / "bench-results"


def prepare_model(folder: Path, seed: int = 0) -> None:
    """`<MODEL_NAME>.th` in `folder`, in the format `demucs.states.load_model` reads."""
    path = folder / f"{MODEL_NAME}.th"
    stamp = folder / f"{MODEL_NAME}.seed"
    if path.exists() and stamp.exists() and stamp.read_text() == str(seed):
        return
    folder.mkdir(parents=True, exist_ok=True)
    model = bench_model.build_model(seed)
    torch.save({"klass": type(model), "args": (), "kwargs": bench_model.HTDEMUCS_KWARGS,
                "state": model.state_dict()}, path)
    stamp.write_text(str(seed))


def stock_cli(files: list[Path], out: Path) -> float:
    """Wall seconds of one `python -m demucs.separate --mp3` call on `files`."""
    command = [sys.executable, "-m", "demucs.separate", "--mp3", "-n", MODEL_NAME,
               "--repo", str(MODELS), "-o", str(out), *map(str, files)]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    took = time.perf_counter() - started
    for file in files:  # the CLI writes <out>/<model>/<track>/<stem>.mp3
        stems = list((out / MODEL_NAME / file.stem).glob("*.mp3"))
        if len(stems) != 4:
            raise RuntimeError(f"the stock CLI wrote {len(stems)} stems for {file.name}")
    return took


class LocalStack:
    """Redis, an S3 server, one separation worker, one render worker and the REST gateway,
    as `make up` starts them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.processes: list[subprocess.Popen] = []
        self.base_url = ""

    def __enter__(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        redis_port, s3_port, rest_port = stack.free_port(), stack.free_port(), stack.free_port()
        logs = RESULTS / "logs"
        self.processes.append(stack.start_redis(redis_port, self.folder / "redis",
                                                logs / "redis.log"))
        self.processes.append(stack.start_object_store(s3_port, self.folder / "s3",
                                                       logs / "s3.log"))
        env = stack.service_env(redis_port, s3_port, DEMUCS_MODEL=MODEL_NAME,
                                DEMUCS_REPO=str(MODELS), WORKER_ID="bench-worker")
        self.jobs = JobStore(connect(Settings.from_env(env)), MODEL_NAME)
        stack.create_buckets(env)
        self.worker_log = logs / "worker.log"
        self.worker_log.write_text("")
        started, since = time.perf_counter(), time.time()
        self.processes.append(stack.start_worker(env, self.worker_log))
        self.processes.append(stack.start_render({**env, "WORKER_ID": "bench-render"},
                                                 logs / "render.log"))
        self.processes.append(stack.start_rest(rest_port, env, logs / "rest.log"))
        self.base_url = f"http://127.0.0.1:{rest_port}"
        self._wait_for_worker(env, since)
        self.worker_start_s = round(time.perf_counter() - started, 1)

    def _wait_for_worker(self, env: dict, since: float, timeout: float = 300) -> None:
        """Until the worker's first heartbeat after `since`; keeps its model's log line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stack.worker_ready(env["REDIS_URL"], env["WORKER_ID"], since):
                lines = self.worker_log.read_text().splitlines()
                self.worker_line = next(line for line in lines if "loaded on" in line)
                return
            if self.processes[2].poll() is not None:
                raise RuntimeError(f"the worker exited; see {self.worker_log}")
            time.sleep(0.2)
        raise TimeoutError("the worker did not become ready")

    def __exit__(self, *_exc) -> None:
        for process in reversed(self.processes):
            stack.stop(process, timeout=30)
        if hasattr(self, "jobs"):
            self.jobs.redis.close()

    def submit(self, mp3: bytes) -> str:
        response = requests.post(f"{self.base_url}/apiv1/separate",
                                 json={"mp3": base64.b64encode(mp3).decode()}, timeout=60)
        response.raise_for_status()
        return response.json()["hash"]

    def wait(self, song_hash: str, timeout: float = 900) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = requests.get(f"{self.base_url}/apiv1/status/{song_hash}", timeout=10).json()
            if status["status"] == "done":
                return status
            if status["status"] == "failed":
                raise RuntimeError(f"song {song_hash} failed: {status['error']}")
            time.sleep(0.25)  # a client polling faster would take CPU from the worker
        raise TimeoutError(f"song {song_hash} not done after {timeout} s")

    def download(self, song_hash: str, tracks: list[str]) -> int:
        size = 0
        for track in tracks:
            response = requests.get(f"{self.base_url}/apiv1/track/{song_hash}/{track}",
                                    timeout=60)
            response.raise_for_status()
            size += len(response.content)
        return size

    def separate_all(self, songs: list[bytes]) -> tuple[float, list[dict]]:
        """Submit every song at once, wait, download all stems: wall seconds and job records."""
        started = time.perf_counter()
        hashes = [self.submit(mp3) for mp3 in songs]
        records = []
        for song_hash in hashes:
            record = self.wait(song_hash)
            self.download(song_hash, record["tracks"])
            records.append(record)
        return time.perf_counter() - started, records


def model_stage(seconds: float, rounds: int, say) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    default = bench_model.resolve_precision("auto", device)
    # Ours in fp32 is timed in the first round only, unless it is the default: the rounds are
    # for the rows the summary uses.
    configs = [] if default == "fp32" else [{"precision": "fp32", "once": True}]
    if device.type == "cuda" and default != "bf16":
        configs.append({"precision": "bf16"})
    configs.append({"precision": default, "label": " (service default)"})
    say(f"1. model stage: {seconds:g} s stereo, htdemucs configuration, overlap 0.25, no shifts, "
        f"{bench_model.device_name(device)}, fastest of {rounds} alternating round(s)")
    rows = bench_model.compare(bench_model.build_model(), bench_model.test_signal(seconds),
                               device, configs, say, rounds)
    return {"device": bench_model.device_name(device), "audio_seconds": seconds,
            "rounds": rounds, "rows": rows, "default": rows[-1]}


def busy_fraction(running: LocalStack, song: Path, say) -> dict:
    """The separation worker's busy fraction for one song: the model's seconds over the
    seconds the worker holds the song, with rendering apart (it stores FLAC stems and a render
    worker encodes the mp3s) and with rendering inside it (it would encode and store the mp3s
    itself, the render job's own seconds, before it could take the next song)."""
    song_hash = running.submit(song.read_bytes())
    running.wait(song_hash)
    jobs = {job.kind: job for job in running.jobs.song_jobs(song_hash)}
    sep, ren = jobs[Kind.SEPARATE].timings, jobs[Kind.RENDER].timings
    model_s = sep["separate"]
    apart_s = sum(sep[k] for k in ("fetch", "decode", "separate", "store"))
    inside_s = apart_s - sep["store"] + ren["render"] + ren["store"]
    figures = {"audio_seconds": sep["audio_seconds"], "separate_s": model_s,
               "separation_worker_s_apart": round(apart_s, 2),
               "separation_worker_s_inside": round(inside_s, 2),
               "busy_apart": round(model_s / apart_s, 3),
               "busy_inside": round(model_s / inside_s, 3),
               "separation_timings": sep, "render_timings": ren}
    say(f"  apart:  separate {model_s:.2f} s of {apart_s:.2f} s held "
        f"(store FLAC {sep['store']:.2f} s): busy {figures['busy_apart']:.1%}")
    say(f"  inside: separate {model_s:.2f} s of {inside_s:.2f} s held (encode mp3 "
        f"{ren['render']:.2f} s, store {ren['store']:.2f} s): busy {figures['busy_inside']:.1%}")
    return figures


def load() -> float:
    """The 1-minute load average: other processes on the machine skew every figure."""
    with open("/proc/loadavg") as handle:
        return float(handle.read().split()[0])


def write_songs(seconds: float, count: int, prefix: str, first_seed: int) -> list[Path]:
    folder = RESULTS / "songs"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}-{n}.mp3" for n in range(1, count + 1)]
    for n, path in enumerate(paths):
        path.write_bytes(song_mp3(seconds, seed=first_seed + n))
    return paths


def end_to_end(running: LocalStack, songs: list[Path], scratch: Path, say) -> dict:
    """Per round, one song: the stock CLI, then ours; the fastest of each side is the figure."""
    stock, ours, stages = [], [], []
    for path in songs:
        stock.append(stock_cli([path], scratch / "e2e"))
        took, (record,) = running.separate_all([path.read_bytes()])
        ours.append(took)
        stages.append(record["timings"])
        say(f"  {path.name}: stock CLI {stock[-1]:6.2f} s, ours {took:6.2f} s (load {load():.1f})")
    best = stages[ours.index(min(ours))]
    say(f"  stock CLI (fresh process, loads the model)  {min(stock):8.2f} s")
    say(f"  ours (warm model, REST in, stems out)       {min(ours):8.2f} s, "
        f"{min(stock) / min(ours):.2f}x faster; stages {best}")
    return {"stock_cli_s": round(min(stock), 2), "ours_s": round(min(ours), 2),
            "speedup": round(min(stock) / min(ours), 2),
            "stock_cli_all_s": [round(t, 2) for t in stock],
            "ours_all_s": [round(t, 2) for t in ours], "ours_timings": best,
            "ours_timings_all": stages,
            "stock_cli_command": f"python -m demucs.separate --mp3 -n {MODEL_NAME} "
                                 f"--repo {MODELS} -o <dir> <song>"}


def throughput(running: LocalStack, songs: list[Path], scratch: Path, one_call: bool,
               say) -> dict:
    count = len(songs)
    loop = sum(stock_cli([path], scratch / "loop") for path in songs)
    say(f"  stock CLI once per song                     {loop:8.2f} s "
        f"({60 * count / loop:.2f} songs/min, load {load():.1f})")
    batch = None
    if one_call:
        batch = stock_cli(songs, scratch / "batch")
        say(f"  stock CLI, all songs in one call            {batch:8.2f} s "
            f"({60 * count / batch:.2f} songs/min, load {load():.1f})")
    ours, records = running.separate_all([path.read_bytes() for path in songs])
    say(f"  ours, all submitted at once to one worker   {ours:8.2f} s "
        f"({60 * count / ours:.2f} songs/min, load {load():.1f}): {loop / ours:.2f}x the CLI "
        f"loop" + (f", {batch / ours:.2f}x the CLI in one call" if batch else ""))
    return {"songs": count, "stock_cli_loop_s": round(loop, 2),
            "stock_cli_one_call_s": round(batch, 2) if batch else None,
            "ours_s": round(ours, 2),
            "stock_loop_songs_per_min": round(60 * count / loop, 2),
            "ours_songs_per_min": round(60 * count / ours, 2),
            "speedup_vs_loop": round(loop / ours, 2),
            "speedup_vs_one_call": round(batch / ours, 2) if batch else None,
            "ours_timings": [record["timings"] for record in records]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=24, help="audio for the model stage")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds of the model stage and of end to end")
    parser.add_argument("--song-seconds", type=float, default=60, help="each song end to end")
    parser.add_argument("--songs", type=int, default=3, help="songs for the throughput test")
    parser.add_argument("--cli-one-call", action="store_true",
                        help="also time the CLI given all songs in one call (adds ~2 minutes)")
    parser.add_argument("--busy-only", action="store_true",
                        help="only stage 4, the separation worker's busy fraction")
    parser.add_argument("--roformer-seconds", type=float, default=10,
                        help="audio for the RoFormer row; 0 skips it")
    parser.add_argument("--roformer-released", action="store_true",
                        help="the RoFormer row at the released size (about 10 min a chunk here)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench.json")
    args = parser.parse_args()
    say = print
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(),
                     "cpus": os.cpu_count(), "torch": torch.__version__,
                     "model": f"{MODEL_NAME}: htdemucs configuration, random weights (seed 0)",
                     "load_at_start": load()}
    if not args.busy_only:
        results["model_stage"] = model_stage(args.seconds, args.rounds, say)
    if not args.busy_only and args.roformer_seconds:
        size = ({} if args.roformer_released else {"dim": 256, "depth": 6})
        say(f"1b. RoFormer model stage, {args.roformer_seconds:g} s, {size or 'released size'}")
        results["roformer"] = bench_roformer.speed(args.roformer_seconds, ["auto"],
                                                   {**bench_roformer.RELEASED, **size})
    torch.set_num_threads(1)  # this process only waits from here on

    prepare_model(MODELS)
    e2e_songs = write_songs(args.song_seconds, args.rounds, "e2e", first_seed=11)
    batch_songs = write_songs(args.song_seconds, args.songs, "batch", first_seed=101)
    (busy_song,) = write_songs(args.song_seconds, 1, "busy", first_seed=201)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch, \
            LocalStack(Path(scratch) / "stack") as running:
        say(f"   (our worker was ready {running.worker_start_s} s after start: "
            f"{running.worker_line.split('model ', 1)[-1]})")
        if not args.busy_only:
            say(f"2. end to end, one {args.song_seconds:g} s mp3, {args.rounds} alternating "
                "round(s)")
            results["end_to_end"] = end_to_end(running, e2e_songs, Path(scratch), say)
            results["end_to_end"]["worker_start_s"] = running.worker_start_s
            say(f"3. throughput, {args.songs} songs of {args.song_seconds:g} s")
            results["throughput"] = throughput(running, batch_songs, Path(scratch),
                                               args.cli_one_call, say)
        say(f"4. the separation worker's busy fraction, one {args.song_seconds:g} s song")
        results["busy"] = busy_fraction(running, busy_song, say)
    results["load_at_end"] = load()
    summary = {}
    if not args.busy_only:
        default = results["model_stage"]["default"]
        summary = {"model_speedup": default["speedup"],
                   "e2e_speedup": results["end_to_end"]["speedup"],
                   "throughput_speedup": results["throughput"]["speedup_vs_loop"],
                   "snr_db": default["snr_db"]}
        if "roformer" in results:
            ours = results["roformer"]["rows"][-1]
            summary.update(roformer_speedup=ours["speedup"], roformer_snr_db=ours["snr_db"])
    summary.update(busy_apart=results["busy"]["busy_apart"],
                   busy_inside=results["busy"]["busy_inside"])
    results["summary"] = summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(bench_model.jsonable(results), indent=2))
    say(f"full results in {args.out}")
    print(" ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    main()
