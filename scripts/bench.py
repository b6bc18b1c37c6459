"""Stock Demucs and this service side by side: same model, same songs, one run.

    python scripts/bench.py                     # about 8 minutes on a 2-core CPU
    python scripts/bench.py --songs 2 --skip-cli-batch --seconds 12

1. Model stage: stock `apply_model` (shifts=0) against worker/batched.py (scripts/bench_model.py).
2. End to end, one 60 s mp3: the stock CLI (`python -m demucs.separate --mp3`, a fresh process
   that loads the model) against the local stack (REST in, worker with the model loaded, stems
   downloaded), with the job's own stage timings.
3. Throughput: N songs submitted at once to one worker, against the CLI run once per song (the
   headline) and the CLI given all N files in one call.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_model  # noqa: E402
import stack  # noqa: E402
from make_samples import song_mp3  # noqa: E402

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
    """Redis, an S3 server, one worker and the REST gateway, as `make up` starts them."""

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
        stack.create_buckets(env)
        self.worker_log = logs / "worker.log"
        self.worker_log.write_text("")
        started = time.perf_counter()
        self.processes.append(stack.start_worker(env, self.worker_log))
        self.processes.append(stack.start_rest(rest_port, env, logs / "rest.log"))
        self.base_url = f"http://127.0.0.1:{rest_port}"
        self._wait_for_worker()
        self.worker_start_s = round(time.perf_counter() - started, 1)

    def _wait_for_worker(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.worker_log.read_text()
            if "ready, waiting for songs" in text:
                self.worker_line = next(line for line in text.splitlines() if "loaded on" in line)
                return
            if self.processes[2].poll() is not None:
                raise RuntimeError(f"the worker exited; see {self.worker_log}")
            time.sleep(0.2)
        raise TimeoutError("the worker did not become ready")

    def __exit__(self, *_exc) -> None:
        for process in reversed(self.processes):
            stack.stop(process, timeout=30)

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
            time.sleep(0.1)
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


def model_stage(seconds: float, say) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    default = bench_model.resolve_precision("auto", device)
    configs = [{"precision": "fp32"}]
    if device.type == "cuda" and default != "bf16":
        configs.append({"precision": "bf16"})
    configs.append({"precision": default, "label": " (service default)"})
    say(f"1. model stage: {seconds:g} s stereo, htdemucs configuration, overlap 0.25, no shifts, "
        f"{bench_model.device_name(device)}")
    rows = bench_model.compare(bench_model.build_model(), bench_model.test_signal(seconds),
                               device, configs, say)
    return {"device": bench_model.device_name(device), "audio_seconds": seconds, "rows": rows,
            "default": rows[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=24, help="audio for the model stage")
    parser.add_argument("--song-seconds", type=float, default=60, help="each song end to end")
    parser.add_argument("--songs", type=int, default=3, help="songs for the throughput test")
    parser.add_argument("--skip-cli-batch", action="store_true",
                        help="do not time the CLI given all songs in one call")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench.json")
    args = parser.parse_args()
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(),
                     "cpus": os.cpu_count(), "torch": torch.__version__,
                     "model": f"{MODEL_NAME}: htdemucs configuration, random weights (seed 0)"}

    def say(line: str) -> None:
        print(line, flush=True)

    results["model_stage"] = model_stage(args.seconds, say)
    torch.set_num_threads(1)  # this process only waits from here on

    prepare_model(MODELS)
    songs_dir = RESULTS / "songs"
    songs_dir.mkdir(parents=True, exist_ok=True)
    song = songs_dir / "e2e.mp3"
    song.write_bytes(song_mp3(args.song_seconds, seed=11))
    batch = [songs_dir / f"song-{n}.mp3" for n in range(1, args.songs + 1)]
    for n, path in enumerate(batch, start=1):
        path.write_bytes(song_mp3(args.song_seconds, seed=100 + n))

    with tempfile.TemporaryDirectory(prefix="bench-cli-") as scratch:
        out = Path(scratch)
        say(f"2. end to end, one {args.song_seconds:g} s mp3")
        cli_e2e = stock_cli([song], out / "e2e")
        say(f"  stock CLI (fresh process, loads the model)  {cli_e2e:8.2f} s")
        say(f"3. throughput, {args.songs} songs of {args.song_seconds:g} s")
        cli_loop = sum(stock_cli([path], out / "loop") for path in batch)
        say(f"  stock CLI once per song                     {cli_loop:8.2f} s "
            f"({60 * args.songs / cli_loop:.2f} songs/min)")
        cli_batch = None
        if not args.skip_cli_batch:
            cli_batch = stock_cli(batch, out / "batch")
            say(f"  stock CLI, all songs in one call            {cli_batch:8.2f} s "
                f"({60 * args.songs / cli_batch:.2f} songs/min)")

    with tempfile.TemporaryDirectory(prefix="bench-stack-") as scratch, \
            LocalStack(Path(scratch)) as running:
        say(f"  (worker ready in {running.worker_start_s} s: "
            f"{running.worker_line.split('model ', 1)[-1]})")
        ours_e2e, (record,) = running.separate_all([song.read_bytes()])
        say(f"  end to end: ours (warm model, REST in, stems out) {ours_e2e:8.2f} s, "
            f"{cli_e2e / ours_e2e:.2f}x the CLI; stages {record['timings']}")
        ours_loop, records = running.separate_all([path.read_bytes() for path in batch])
        say(f"  throughput: ours, all submitted at once          {ours_loop:8.2f} s "
            f"({60 * args.songs / ours_loop:.2f} songs/min), {cli_loop / ours_loop:.2f}x the "
            f"CLI loop" + (f", {cli_batch / ours_loop:.2f}x the CLI batch" if cli_batch else ""))

    default = results["model_stage"]["default"]
    results["end_to_end"] = {"song_seconds": args.song_seconds, "stock_cli_s": round(cli_e2e, 2),
                             "ours_s": round(ours_e2e, 2), "speedup": round(cli_e2e / ours_e2e, 2),
                             "ours_timings": record["timings"],
                             "worker_start_s": running.worker_start_s,
                             "stock_cli_command": "python -m demucs.separate --mp3 -n "
                                                  f"{MODEL_NAME} --repo {MODELS} -o <dir> <song>"}
    results["throughput"] = {
        "songs": args.songs, "song_seconds": args.song_seconds,
        "stock_cli_loop_s": round(cli_loop, 2),
        "stock_cli_one_call_s": round(cli_batch, 2) if cli_batch else None,
        "ours_s": round(ours_loop, 2), "ours_songs_per_min": round(60 * args.songs / ours_loop, 2),
        "stock_loop_songs_per_min": round(60 * args.songs / cli_loop, 2),
        "speedup_vs_loop": round(cli_loop / ours_loop, 2),
        "speedup_vs_one_call": round(cli_batch / ours_loop, 2) if cli_batch else None,
        "ours_timings": [r["timings"] for r in records]}
    summary = {"model_speedup": default["speedup"],
               "e2e_speedup": results["end_to_end"]["speedup"],
               "throughput_speedup": results["throughput"]["speedup_vs_loop"],
               "snr_db": default["snr_db"]}
    results["summary"] = summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    say(f"full results in {args.out}")
    print(" ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    main()
