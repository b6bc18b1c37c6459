"""The local stack: Redis, an S3 server, the REST gateway under gunicorn, separation workers
(WORKERS, default 1) and render workers (RENDERERS, default 1).

    python -m scripts.local.stack up      # start in the background; returns once /readyz answers
    python -m scripts.local.stack down    # stop exactly the processes `up` started

Process ids go to .run/<name>.pid and logs to .run/<name>.log. The same functions start the
servers of the test suite, so tests run the services the way users do.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / ".run"
S3_ACCESS_KEY = "rootuser"
S3_SECRET_KEY = "rootpass123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(answers, process: subprocess.Popen, timeout: float, what: str) -> None:
    """Poll `answers()` until it is true; fail early if `process` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        if answers():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} after {timeout} s")


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    _wait_until(lambda: _port_open(port), process, timeout, f"nothing listens on port {port}")


def _spawn(command: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=env, start_new_session=True)


def start_redis(port: int, data_dir: Path, log: Path) -> subprocess.Popen:
    """A Redis server with the persistence the shipped configuration uses (AOF, everysec)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    process = _spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                      "--dir", str(data_dir), "--save", "", "--appendonly", "yes",
                      "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"], log)
    wait_for_port(port, process)
    return process


def start_object_store(port: int, data_dir: Path, log: Path) -> subprocess.Popen:
    """A `minio` server when one is on PATH, otherwise moto's S3 server."""
    env = {**os.environ, "MINIO_ROOT_USER": S3_ACCESS_KEY, "MINIO_ROOT_PASSWORD": S3_SECRET_KEY}
    if shutil.which("minio"):
        data_dir.mkdir(parents=True, exist_ok=True)
        command = ["minio", "server", str(data_dir), "--address", f"127.0.0.1:{port}", "--quiet"]
    else:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = _spawn(command, log, env)
    wait_for_port(port, process)
    return process


def service_env(redis_port: int, s3_port: int, **extra: str) -> dict[str, str]:
    """The environment both services get in the local stack."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.setdefault("CALLBACK_ALLOW_PRIVATE", "true")
    env.update({
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "MINIO_HOST": f"127.0.0.1:{s3_port}",
        "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
        "MINIO_SECRET_KEY": S3_SECRET_KEY,
        **extra,
    })
    return env


def start_rest(port: int, env: dict, log: Path) -> subprocess.Popen:
    """The gateway as shipped: gunicorn with rest/gunicorn.conf.py, on a loopback port, its
    processes' metrics summed in a folder beside its log (as the Deployment's emptyDir)."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(log.with_name(f"{log.stem}-metrics")),
           **(env or os.environ), "PORT": f"127.0.0.1:{port}"}
    process = _spawn([sys.executable, "-m", "gunicorn", "--config", "rest/gunicorn.conf.py",
                      "rest.app:create_app()"], log, env)
    wait_ready(f"http://127.0.0.1:{port}", process)
    return process


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    return _spawn([sys.executable, "-m", "worker"], log, env)


def start_render(env: dict, log: Path) -> subprocess.Popen:
    """A render worker: no model, its own pool of RENDER_PROCESSES encoders."""
    return _spawn([sys.executable, "-m", "worker.render"], log, env)


def _ready(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_ready(base_url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    _wait_until(lambda: _ready(base_url), process, timeout,
                f"{base_url}/readyz did not answer 200")


def worker_ready(redis_url: str, worker_id: str, since: float) -> bool:
    """Whether the worker beat at or after `since` (a Unix time): its model is loaded and it
    claims jobs (worker/runtime/heartbeat.py)."""
    from worker.runtime.heartbeat import beat_since

    try:
        with redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=2) as client:
            return beat_since(client, worker_id, since)
    except redis.RedisError:
        return False


def local_worker_id(name: str) -> str:
    """WORKER_ID of the stack's worker `name` (worker-1, render-1, ...)."""
    return f"{socket.gethostname()}-{name}"


def saved_env() -> dict[str, str]:
    """What `up` wrote to .run/stack.env: REDIS_URL, MINIO_HOST, REST."""
    lines = (RUN / "stack.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def create_buckets(env: dict) -> None:
    from common.settings import Settings
    from common.storage import Storage

    store = Storage(Settings.from_env(env))
    store.ensure_buckets()
    store.close()


@contextmanager
def stores(folder: Path, **extra: str) -> Iterator[dict[str, str]]:
    """A Redis server and an S3 server on free loopback ports, with the buckets made: yields
    the services' environment (`extra` added); both stopped at the end. Logs in `folder`."""
    redis_port, s3_port = free_port(), free_port()
    servers = [start_redis(redis_port, folder / "redis", folder / "redis.log")]
    try:
        servers.append(start_object_store(s3_port, folder / "s3", folder / "s3.log"))
        env = service_env(redis_port, s3_port, **extra)
        create_buckets(env)
        yield env
    finally:
        for server in servers:
            stop(server)


def stop(process: subprocess.Popen | int, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; takes a Popen or a process id."""
    if isinstance(process, subprocess.Popen):
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return
    try:
        os.kill(process, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(process):
            return
        time.sleep(0.1)
    os.kill(process, signal.SIGKILL)


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal a process started here (each in a session of its own) and everything it started,
    as a container runtime kills a whole container; after SIGKILL, wait for it."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    if sig == signal.SIGKILL:
        process.wait(30)


def _exited(process_id: int) -> bool:
    try:
        if os.waitpid(process_id, os.WNOHANG)[0]:
            return True  # our own child, now reaped
    except ChildProcessError:
        pass  # not our child: `make down` runs in a process of its own
    try:
        os.kill(process_id, 0)
    except ProcessLookupError:
        return True
    return False


def up() -> None:
    if any(RUN.glob("*.pid")):
        sys.exit("the stack is already up (pid files in .run/); run `make down` first")
    RUN.mkdir(exist_ok=True)
    for old_log in RUN.glob("*.log"):
        old_log.unlink()  # a new stack starts new logs, so readers see only this run
    redis_port, s3_port = free_port(), free_port()
    rest_port = int(os.environ.get("REST_PORT", "5000"))
    env = service_env(redis_port, s3_port)
    if not shutil.which("minio"):
        # moto keeps objects in memory only: start Redis empty too, so that no job record
        # outlives the stems it describes.
        shutil.rmtree(RUN / "redis", ignore_errors=True)
    started = {"redis": start_redis(redis_port, RUN / "redis", RUN / "redis.log"),
               "s3": start_object_store(s3_port, RUN / "s3", RUN / "s3.log")}
    for name, process in started.items():
        (RUN / f"{name}.pid").write_text(str(process.pid))
    create_buckets(env)
    counts = {"worker": (start_worker, "WORKERS"), "render": (start_render, "RENDERERS")}
    for kind, (start, variable) in counts.items():
        for number in range(1, int(os.environ.get(variable, "1")) + 1):
            name = f"{kind}-{number}"
            process = start({**env, "WORKER_ID": local_worker_id(name)},
                            RUN / f"{name}.log")
            (RUN / f"{name}.pid").write_text(str(process.pid))
    rest = start_rest(rest_port, env, RUN / "rest.log")
    (RUN / "rest.pid").write_text(str(rest.pid))
    (RUN / "stack.env").write_text(
        f"REDIS_URL={env['REDIS_URL']}\nMINIO_HOST={env['MINIO_HOST']}\n"
        f"REST=127.0.0.1:{rest_port}\n")
    print(f"stack up: REST on http://127.0.0.1:{rest_port}, Redis on {redis_port}, "
          f"S3 on {s3_port}; logs in .run/")


def down() -> None:
    # Workers first, so that they hand back their jobs while Redis is still there.
    pid_files = sorted(RUN.glob("*.pid"), key=lambda p: (p.stem in ("redis", "s3"), p.stem))
    for pid_file in pid_files:
        stop(int(pid_file.read_text()))
        pid_file.unlink()
        print(f"stopped {pid_file.stem}")


if __name__ == "__main__":
    commands = {"up": up, "down": down}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit("usage: python -m scripts.local.stack up|down")
    commands[sys.argv[1]]()
