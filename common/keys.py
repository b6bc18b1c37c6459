"""Every Redis key the services use, one function each; nothing else builds a key."""

QUEUE = "toWorker"  # list of song hashes waiting, oldest at the head
LOGGING = "logging"  # list of `<host>.<service>.<level>:<message>` lines
WORKERS = "workers"  # set of worker ids that may hold claimed jobs
REAPER_LOCK = "reaper:lock"  # held by the one worker currently reaping
# Hash of jobs ended, by outcome: `done`, `cancelled`, `failed:<reason>`; for /metrics.
FINISHED = "finished"


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


def inflight(queue: str) -> str:
    """List with one entry per job of `queue` being worked on, for the autoscaler to count.

    A job's entry is pushed by the same script that makes its record `processing` and removed
    by the script that ends that attempt (finish, hand-back, requeue or failure of an orphan),
    so LLEN(queue) + LLEN(inflight(queue)) is the work a queue's workers hold or owe.
    """
    return f"inflight:{queue}"


def rate(client: str) -> str:
    """Sorted set of a client's accepted writes in the last minute, scored by time in ms."""
    return f"rate:{client}"
