"""`make demo`: start the local stack, separate a sample song through the REST API, download
its four stems to ./output/<hash>/, and stop the stack again.
"""

from __future__ import annotations

import base64
import os
import sys
import time

import requests

from scripts.local import sample_client, stack

SONG = stack.ROOT / "data" / "song.mp3"
WORKER_LOG = stack.RUN / "worker-1.log"


def worker_exited() -> bool:
    pid = int((stack.RUN / "worker-1.pid").read_text())
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0  # the worker is our child
    except ChildProcessError:
        return True


def why_worker_exited() -> str:
    lines = WORKER_LOG.read_text().splitlines()
    critical = [line.split(" CRITICAL ", 1)[1] for line in lines if " CRITICAL " in line]
    return critical[-1] if critical else (lines[-1] if lines else "it exited without a word")


def wait_until_worker_ready(since: float, timeout: float = 600) -> None:
    """Until the worker's first heartbeat after `since`: its model loaded, it claims."""
    redis_url, worker_id = stack.saved_env()["REDIS_URL"], stack.local_worker_id("worker-1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.worker_ready(redis_url, worker_id, since):
            return
        if worker_exited():
            raise SystemExit(f"demo stopped: the worker cannot run: {why_worker_exited()}")
        time.sleep(0.5)
    raise SystemExit(f"demo stopped: the worker was not ready after {timeout:.0f} s")


def separate_sample(since: float) -> None:
    """Send the sample song once the worker started after `since` is ready; fetch its stems."""
    wait_until_worker_ready(since)
    print(f"sending {SONG.relative_to(stack.ROOT)} to http://{sample_client.REST}")
    body = sample_client.mkReq(requests.post, "apiv1/separate",
                               {"mp3": base64.b64encode(SONG.read_bytes()).decode()},
                               verbose=False)
    if not body:
        raise SystemExit("demo stopped: the REST API refused the song")
    status = sample_client.wait_for(body["hash"])
    if status["status"] != "done":
        raise SystemExit(f"demo stopped: separation {status['status']}: {status.get('error')}")
    paths = sample_client.download(body["hash"], status["tracks"])
    print(f"separated {status['timings']['audio_seconds']:.0f} s of audio in "
          f"{status['timings']['separate']:.1f} s; the stems are in {paths[0].parent}/:")
    for path in paths:
        print(f"  {path} ({path.stat().st_size} bytes)")


def main() -> int:
    os.chdir(stack.ROOT)
    sample_client.REST = f"127.0.0.1:{os.environ.get('REST_PORT', '5000')}"
    started, since = time.monotonic(), time.time()
    stack.up()
    try:
        separate_sample(since)
    finally:
        stack.down()
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
