"""Every Redis key the services use, one function each; nothing else builds a key."""

QUEUE = "toWorker"  # list of song hashes waiting, oldest at the head
LOGGING = "logging"  # list of `<host>.<service>.<level>:<message>` lines
WORKERS = "workers"  # set of worker ids that may hold claimed jobs
REAPER_LOCK = "reaper:lock"  # held by the one worker currently reaping


def job(song_hash: str) -> str:
    """Hash holding the job record of one song."""
    return f"job:{song_hash}"


def processing(worker_id: str) -> str:
    """List of song hashes a worker has claimed and not yet finished."""
    return f"processing:{worker_id}"


def outbox(worker_id: str) -> str:
    """List of songs whose job a worker ended and whose callback it has not yet sent."""
    return f"outbox:{worker_id}"


def heartbeat(worker_id: str) -> str:
    """Key that exists, with a short TTL, while a worker is alive."""
    return f"heartbeat:{worker_id}"


def rate(client: str) -> str:
    """Sorted set of a client's accepted writes in the last minute, scored by time in ms."""
    return f"rate:{client}"
