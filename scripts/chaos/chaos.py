"""Chaos soak: songs through the whole local stack while workers are killed at random.

    python -m scripts.chaos.chaos [--songs 50 --workers 3 --kill-every 3 --seed 1 --keep]

Starts its own Redis (AOF), S3 server, gunicorn, separation workers and render workers on free
ports, with logs in a temporary folder (not .run/). Submits distinct synthetic 2-4 s songs
while it SIGKILLs a random working worker of either kind (with its render processes, as a
container runtime would) every few seconds and restarts it under the same WORKER_ID; once
every song has ended it checks that each one is `done` with its four mp3 tracks in the output
bucket. Half-way through, it sends one round of hostile uploads (scripts/chaos/hostile.py), each of
which must be refused. The last lines read `hostile attempts=H not_refused=R` and
`songs submitted=N done=D lost=L`; the exit status is 0 only when nothing was lost and every
hostile attempt was refused.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from base64 import b64encode
from pathlib import Path

import requests

from common import keys
from common.redisconn import connect
from common.settings import Settings
from common.storage import Storage
from common.tracks import FOUR_STEMS, default_rendition
from scripts.chaos.hostile import hostile_round
from scripts.local import stack
from scripts.local.make_samples import song_mp3

STEMS = sorted(FOUR_STEMS)
FINAL = ("done", "failed")


class Workers:
    """The separation and render worker processes, each restartable under its own id."""

    def __init__(self, env: dict, folder: Path, count: int, renderers: int):
        self.env, self.folder = env, folder
        self.starters = {f"chaos-worker-{n}": stack.start_worker for n in range(1, count + 1)}
        self.starters.update({f"chaos-render-{n}": stack.start_render
                              for n in range(1, renderers + 1)})
        self.ids = list(self.starters)
        self.processes = {worker_id: self._start(worker_id) for worker_id in self.ids}
        self.started_at = dict.fromkeys(self.ids, time.time())
        self.kills = 0

    def _start(self, worker_id: str):
        return self.starters[worker_id]({**self.env, "WORKER_ID": worker_id},
                                        self.folder / f"{worker_id}.log")

    def working(self, client) -> list[str]:
        """Workers whose current process has sent a heartbeat (so it is past its start)."""
        beats = {worker_id: client.get(keys.heartbeat(worker_id)) for worker_id in self.ids}
        return [worker_id for worker_id, beat in beats.items()
                if beat and float(beat) > self.started_at[worker_id]]

    def kill_and_restart(self, worker_id: str) -> None:
        stack.kill_group(self.processes[worker_id])
        self.kills += 1
        self.started_at[worker_id] = time.time()
        self.processes[worker_id] = self._start(worker_id)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                stack.stop(process, timeout=20)
            stack.kill_group(process)  # leftover render processes


def chaos(workers: Workers, client, stop: threading.Event, every: float, rng: random.Random):
    while not stop.wait(rng.uniform(0.5 * every, 1.5 * every)):
        candidates = workers.working(client)
        if candidates:
            victim = rng.choice(candidates)
            workers.kill_and_restart(victim)
            print(f"  killed {victim} (kill {workers.kills})", flush=True)


def tracks_stored(storage: Storage, song_hash: str, settings: Settings) -> bool:
    """Whether the song's four default mp3 tracks are all in the output bucket."""
    rendition = default_rendition(settings.mp3_bitrate)
    stored = storage.names_under(f"{song_hash}/{settings.default_model}/{rendition.id}/")
    return sorted(stored) == sorted(rendition.track_names(STEMS))


def statuses(base_url: str, hashes: list[str]) -> dict[str, dict]:
    found = {}
    for song_hash in hashes:
        try:
            response = requests.get(f"{base_url}/apiv1/status/{song_hash}", timeout=30)
            found[song_hash] = response.json() if response.ok else {"status": "unknown"}
        except requests.RequestException:
            found[song_hash] = {"status": "unknown"}
    return found


def wait_until_ended(base_url: str, hashes: list[str], deadline: float) -> dict[str, dict]:
    while True:
        found = statuses(base_url, hashes)
        ended = sum(found[h]["status"] in FINAL for h in hashes)
        if ended == len(hashes) or time.monotonic() > deadline:
            return found
        print(f"  {ended}/{len(hashes)} songs ended", flush=True)
        time.sleep(5)


def run(args: argparse.Namespace, folder: Path) -> int:
    rng = random.Random(args.seed)
    rest_port = stack.free_port()
    workers = rest = None
    stop = threading.Event()
    with stack.stores(folder, HEARTBEAT_TTL_S="3", REAPER_INTERVAL_S="1",
                      MAX_DEATHS=str(args.max_attempts), LOG_LEVEL="INFO",
                      TORCH_THREADS=os.environ.get("TORCH_THREADS", "1"),
                      RENDER_PROCESSES=os.environ.get("RENDER_PROCESSES", "1"),
                      DEMUCS_MODEL=os.environ.get("DEMUCS_MODEL", "demucs_unittest"),
                      MAX_DURATION_S="60", BODY_TIMEOUT_S="5") as env:
        try:
            workers = Workers(env, folder, args.workers, args.renderers)
            rest = stack.start_rest(rest_port, env, folder / "rest.log")
            base_url = f"http://127.0.0.1:{rest_port}"
            settings = Settings.from_env(env)
            client = connect(settings)

            started = time.monotonic()
            killer = threading.Thread(target=chaos, args=(workers, client, stop, args.kill_every,
                                                          rng), daemon=True)
            killer.start()
            print(f"submitting {args.songs} songs over {args.submit_seconds:.0f} s; logs in "
                  f"{folder}", flush=True)
            hashes, hostile = [], (0, [])
            for n in range(args.songs):
                if n == args.songs // 2:
                    hostile = hostile_round(base_url)
                    print(f"  hostile round: {hostile[0]} attempts, {len(hostile[1])} not refused",
                          flush=True)
                mp3 = song_mp3(2 + n % 3, seed=args.seed * 1000 + n)
                response = requests.post(f"{base_url}/apiv1/separate",
                                         json={"mp3": b64encode(mp3).decode()}, timeout=60)
                response.raise_for_status()
                hashes.append(response.json()["hash"])
                time.sleep(args.submit_seconds / args.songs)
            assert len(set(hashes)) == len(hashes), "two synthetic songs came out identical"
            wait_until_ended(base_url, hashes, started + args.chaos_seconds)
            stop.set()
            killer.join()
            print(f"chaos over after {time.monotonic() - started:.0f} s and {workers.kills} kills; "
                  "waiting for the rest", flush=True)
            found = wait_until_ended(base_url, hashes, time.monotonic() + args.calm_seconds)

            storage = Storage(settings)
            done = [h for h in hashes
                    if found[h]["status"] == "done" and tracks_stored(storage, h, settings)]
            storage.close()
            for song_hash in sorted(set(hashes) - set(done)):
                print(f"  lost {song_hash}: {found[song_hash]}", flush=True)
            attempts = sum(found[h].get("attempts", 0) for h in hashes)
            print(f"{workers.kills} workers killed, {attempts} attempts for {len(hashes)} songs, "
                  f"{time.monotonic() - started:.0f} s", flush=True)
            for failure in hostile[1]:
                print(f"  not refused: {failure}", flush=True)
            print(f"hostile attempts={hostile[0]} not_refused={len(hostile[1])}", flush=True)
            print(f"songs submitted={len(hashes)} done={len(done)} lost={len(hashes) - len(done)}",
                  flush=True)
            return 0 if len(done) == len(hashes) and not hostile[1] else 1
        finally:
            stop.set()
            if workers is not None:
                workers.stop()
            if rest is not None:
                stack.stop(rest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3, help="separation workers")
    parser.add_argument("--renderers", type=int, default=2, help="render workers")
    parser.add_argument("--submit-seconds", type=float, default=30,
                        help="spread the submissions over this long, while workers are killed")
    parser.add_argument("--kill-every", type=float, default=3.0,
                        help="mean seconds between two kills")
    parser.add_argument("--chaos-seconds", type=float, default=420,
                        help="stop killing after this long even if songs remain")
    parser.add_argument("--calm-seconds", type=float, default=150,
                        help="then wait this long for the remaining songs")
    parser.add_argument("--max-attempts", type=int, default=20,
                        help="MAX_DEATHS; random kills may hit one song several times, "
                             "which is not what poison detection is for")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the logs folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="micro-demucs-chaos-"))
    try:
        return run(args, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
