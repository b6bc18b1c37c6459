"""Every environment variable the services read, with its default and what it means: the one
list that the README, docker-compose.yml and the Kubernetes ConfigMap are checked against.
Standard library only (the worker image's model layer copies it with common/settings.py)."""

from __future__ import annotations

# name -> (default, one-line description). Secrets, marked "(secret)", default to empty; a
# service refuses to start with an empty object-store key or a placeholder in any of them
# (Settings.require_secrets).
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "REDIS_URL": ("", "Redis URL (redis://[:password@]host:port/db); wins over REDIS_HOST/PORT"),
    "REDIS_HOST": ("localhost", "Redis host when REDIS_URL is empty"),
    "REDIS_PORT": ("6379", "Redis port; a Kubernetes-style tcp://host:port value is accepted"),
    "REDIS_DB": ("0", "Redis database number"),
    "REDIS_PASSWORD": ("", "Redis password (secret)"),
    "MINIO_HOST": ("localhost:9000", "Object store endpoint, host:port"),
    "MINIO_ACCESS_KEY": ("", "Object store access key; required (secret)"),
    "MINIO_SECRET_KEY": ("", "Object store secret key; required (secret)"),
    "MINIO_SECURE": ("false", "Use HTTPS to reach the object store"),
    "MINIO_REGION": ("us-east-1", "Object store region"),
    "STORE_TIMEOUT_S": ("5", "The gateway's limit on connecting to and each read from the object "
                        "store (then 503); workers wait 60 s"),
    "SONGS_BUCKET": ("songs", "Bucket holding uploads, as <hash>.<ext>"),
    "OUTPUT_BUCKET": ("output", "Bucket holding stems and renditions, under <hash>/"),
    "MAX_UPLOAD_MB": ("100", "Largest accepted mp3, in megabytes (decoded size)"),
    "MAX_DURATION_S": ("10800", "Longest accepted song, in seconds of audio"),
    "MIN_DURATION_S": ("1", "Shortest accepted song, in seconds of audio"),
    "MAX_CALLBACK_DATA_KB": ("64", "Largest accepted callback.data, in KiB of JSON"),
    "BODY_TIMEOUT_S": ("120", "A request body must arrive within this many seconds (408 after)"),
    "MAX_CONCURRENT_UPLOADS": ("4", "Uploads a gateway process receives at once (then 503)"),
    "LOG_LIST_MAX": ("1000", "Length at which the Redis list `logging` is trimmed"),
    "LOG_LEVEL": ("INFO", "Lowest level logged to stdout and to `logging`"),
    "API_KEYS": ("", "Comma-separated; `key` (or `key:rw`) may submit and change its own songs, "
                 "`key:ro` only read, `key:admin` change any song (secret)"),
    "PROTECT_READS": ("false", "Require an API key for reads as well"),
    "REMOVE_REQUIRES_DELETE": ("false", "Refuse removal by GET (CSRF-safe); only DELETE removes"),
    "RATE_LIMIT_PER_MIN": ("60", "Writes, and downloads that start a rendition, allowed per "
                           "client per minute; 0 turns the limit off"),
    "MAX_QUEUE_LENGTH": ("1000", "Submissions (and new renditions) are refused with 503 while "
                         "their queue is this long"),
    "MAX_RENDITIONS_PER_SONG": ("12", "Renditions (format, quality, two-stem pair) made of one "
                                "song at most; asking for more answers 409"),
    "PROXY_HOPS": ("0", "Trusted proxies in front of rest (1 behind an ingress)"),
    "DEMUCS_MODELS": ("", "Models the deployment serves, comma-separated; empty: just "
                      "DEMUCS_MODEL"),
    "DEFAULT_MODEL": ("", "Model a song gets when it names none, one of DEMUCS_MODELS (its jobs "
                      "keep the bare hash on `toWorker`); empty: the only model served"),
    "DEMUCS_MODEL": ("htdemucs", "Model this separation worker loads (htdemucs, htdemucs_ft, "
                     "htdemucs_6s, demucs_unittest, ...)"),
    "MODELS_DIR": ("", "Folder of model files (Demucs N.th/N.yaml, RoFormer N.yaml + N.ckpt); "
                   "empty: the Hugging Face hub and its cache"),
    "DEMUCS_REPO": ("", "Old name of MODELS_DIR, read when MODELS_DIR is not set"),
    "DEMUCS_DEVICE": ("auto", "auto (CUDA when available), cpu or cuda[:n]"),
    "DEMUCS_PRECISION": ("auto", "auto (bf16 on CUDA and bf16 CPUs, else fp32), fp32, bf16, fp16"),
    "DEMUCS_BATCH": ("0", "Segments (RoFormer: chunks) per forward pass; 0: from free memory "
                     "on CUDA, 1 on CPU; a RoFormer's inference.batch_size caps the first and "
                     "replaces the second"),
    "DEMUCS_COMPILE": ("false", "torch.compile HTDemucs on CUDA (cache: TORCHINDUCTOR_CACHE_DIR)"),
    "DEMUCS_OVERLAP": ("0.25", "Overlap between segments, as stock Demucs"),
    "DEMUCS_SHIFTS": ("0", "Random-shift passes; 0 keeps output deterministic"),
    "TORCH_THREADS": ("0", "Torch CPU threads; 0 means the cores this container may use"),
    "RENDER_PROCESSES": ("0", "Encoding processes of a render worker; 0: one per usable core"),
    "MP3_BITRATE": ("320", "Bitrate of the stem mp3s, kbps"),
    "WORKER_ID": ("", "Unique worker name; empty means <host>-<pid>"),
    "HEARTBEAT_TTL_S": ("10", "A worker silent this long is presumed dead and its jobs requeued"),
    "REAPER_INTERVAL_S": ("2", "How often each worker looks for dead workers' jobs"),
    "STALL_TIMEOUT_S": ("300", "A worker whose claim loop and job report no progress this long is "
                        "hung: its heartbeat stops and its /healthz fails (liveness)"),
    "MAX_DEATHS": ("3", "Worker deaths a job may cause before it fails as worker_lost "
                   "(MAX_ATTEMPTS, its former name, is read when MAX_DEATHS is not set)"),
    "RESULT_TTL_HOURS": ("0", "Songs whose newest result is older are deleted by the workers' "
                         "sweep, as DELETE does; 0 keeps them"),
    "SHUTDOWN_GRACE_S": ("60", "On SIGTERM, time to finish the current job before handing it back"),
    "CALLBACK_TIMEOUT_S": ("5", "Timeout of each callback request"),
    "CALLBACK_RETRIES": ("3", "Callback attempts before giving up"),
    "CALLBACK_SECRET": ("", "When set, callbacks carry X-Signature (HMAC-SHA256) (secret)"),
    "CALLBACK_ALLOW_PRIVATE": ("false", "Allow callbacks to private and loopback addresses"),
    "METRICS_PORT": ("0", "Port of a worker's Prometheus metrics and /healthz; 0 serves none"),
}
