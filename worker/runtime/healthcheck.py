"""Exit 0 while this pod's worker has a live heartbeat: `python -m worker.runtime.healthcheck`.

For a Kubernetes exec probe. The worker's id comes from WORKER_ID or from the file the
worker writes at start (its default id holds its process id, which the probe cannot know).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import redis

from common.redisconn import connect
from common.settings import Settings, SettingsError
from worker.runtime.heartbeat import is_alive

ID_FILE = Path(tempfile.gettempdir()) / "micro-demucs-worker.id"


def worker_id(environ_id: str) -> str | None:
    """WORKER_ID when set, else the id the worker wrote at start; None before it started."""
    if environ_id:
        return environ_id
    try:
        return ID_FILE.read_text().strip() or None
    except OSError:
        return None


def main() -> int:
    """Print one line; 0 while the worker's heartbeat lives, 1 otherwise."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"unhealthy: bad configuration: {error}")
        return 1
    name = worker_id(os.environ.get("WORKER_ID", "").strip())
    if name is None:
        print("unhealthy: the worker has not started (no WORKER_ID and no id file)")
        return 1
    try:
        alive = is_alive(connect(settings, socket_timeout=3), name)
    except redis.RedisError as error:
        print(f"unhealthy: Redis unavailable: {error}")
        return 1
    print(f"{'healthy' if alive else 'unhealthy'}: worker {name} heartbeat "
          f"{'present' if alive else 'missing'}")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
