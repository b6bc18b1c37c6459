"""Every Redis key the services use, one function each; nothing else builds a key."""

QUEUE = "toWorker"  # list of job ids of DEFAULT_MODEL's separations, oldest at the head
RENDER_QUEUE = "toRender"  # list of render job ids waiting, oldest at the head
MODELS = "models"  # hash: model -> JSON list of its stems, written by its workers at start
EXPIRY = "expiry"  # sorted set: song hash scored by the time its newest job ended
LOGGING = "logging"  # list of `<host>.<service>.<level>:<message>` lines
WORKERS = "workers"  # set of worker ids that may hold claimed jobs
REAPER_LOCK = "reaper:lock"  # held by the one worker currently reaping
# Hash of jobs ended, by outcome: `done`, `cancelled`, `failed:<reason>`; for /metrics.
FINISHED = "finished"


def job(job_id: str) -> str:
    """Hash holding one job's record (`job:<hash>` for the default model's separation)."""
    return f"job:{job_id}"


def song(song_hash: str) -> str:
    """Set of the ids of every job of one song (all models, all renditions)."""
    return f"song:{song_hash}"


def separation_queue(model: str, default_model: str) -> str:
    """The queue of a model's separations: `toWorker` for DEFAULT_MODEL, `toWorker:<model>`
    for any other."""
    return QUEUE if model == default_model else f"{QUEUE}:{model}"


def queue_of(job_id: str) -> str:
    """The queue a job waits in, read from its id: `H`, `H:<model>`, `H:<model>:<rendition>`."""
    parts = job_id.split(":")
    if len(parts) == 3:
        return RENDER_QUEUE
    return QUEUE if len(parts) == 1 else f"{QUEUE}:{parts[1]}"


def processing(worker_id: str) -> str:
    """List of job ids a worker has claimed and not yet finished."""
    return f"processing:{worker_id}"


def outbox(worker_id: str) -> str:
    """List of job ids a worker ended and whose callback it has not yet sent."""
    return f"outbox:{worker_id}"


def heartbeat(worker_id: str) -> str:
    """Key that exists, with a short TTL, while a worker is alive."""
    return f"heartbeat:{worker_id}"


def inflight(queue: str) -> str:
    """List with one entry per job of `queue` being worked on, for the autoscaler to count.

    A job's entry is pushed by the same script that makes its record `processing` and removed
    by the script that ends that attempt (finish, hand back, requeue or failure of an orphan),
    so LLEN(queue) + LLEN(inflight(queue)) is the work a queue's workers hold or owe.
    """
    return f"inflight:{queue}"


def rate(client: str) -> str:
    """Sorted set of a client's accepted writes in the last minute, scored by time in ms."""
    return f"rate:{client}"


def rate_refused(client: str) -> str:
    """Sorted set of a client's refused writes in the last minute, scored by time in ms."""
    return f"rate-refused:{client}"


def owners(song_hash: str) -> str:
    """Set of the ids (hashes) of the API keys that submitted a song; deleted with the song."""
    return f"owners:{song_hash}"


def deletions(song_hash: str) -> str:
    """Counter of a song's deletions, odd while one is under way (its objects being removed);
    a submission that read another value may have seen an upload that is now gone."""
    return f"deletions:{song_hash}"


# Hash: model -> JSON of what its workers found on loading it (family, sample rate, chunk,
# parameters, stems); written by each separation worker at start, beside MODELS.
MODEL_INFO = "model-info"


def model_workers(model: str) -> str:
    """Set of the ids of the workers that registered a model (ready while one beats)."""
    return f"model-workers:{model}"


def speed(model: str) -> str:
    """Hash of a model's measured speed: `<device>|jobs`, `|audio_s`, `|seconds`, `|rtf`."""
    return f"speed:{model}"


def ensemble(name: str) -> str:
    """String: the JSON spec of ensemble pseudo-model `name`, written once, never changed."""
    return f"ensemble:{name}"


def ensemble_waiting(song_hash: str) -> str:
    """Set of a song's ensemble stems jobs waiting for their members' separations to end."""
    return f"ensemble-waiting:{song_hash}"
