"""Settings read once from the environment into a frozen dataclass.

Every variable the services read is listed in `ENVIRONMENT`, with its default, so that the
README, docker-compose.yml and the Kubernetes ConfigMap can be checked against one list.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """An environment variable holds a value the services cannot use."""


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
    "API_KEYS": ("", "Comma-separated; `key` may submit and remove, `key:ro` read (secret)"),
    "PROTECT_READS": ("false", "Require an API key for reads as well"),
    "REMOVE_REQUIRES_DELETE": ("false", "Refuse removal by GET (CSRF-safe); only DELETE removes"),
    "RATE_LIMIT_PER_MIN": ("60", "Writes allowed per client per minute; 0 turns the limit off"),
    "MAX_QUEUE_LENGTH": ("1000", "Submissions are refused with 503 while the queue is this long"),
    "PROXY_HOPS": ("0", "Trusted proxies in front of rest (1 behind an ingress)"),
    "DEMUCS_MODELS": ("", "Models the deployment serves, comma-separated, the first the default; "
                      "empty: just DEMUCS_MODEL"),
    "DEMUCS_MODEL": ("htdemucs", "Model this separation worker loads (htdemucs, htdemucs_ft, "
                     "htdemucs_6s, demucs_unittest, ...)"),
    "DEMUCS_REPO": ("", "Local folder of model files; empty: the Hugging Face hub and its cache"),
    "DEMUCS_DEVICE": ("auto", "auto (CUDA when available), cpu or cuda[:n]"),
    "DEMUCS_PRECISION": ("auto", "auto (bf16 on CUDA and bf16 CPUs, else fp32), fp32, bf16, fp16"),
    "DEMUCS_BATCH": ("0", "Segments per forward pass; 0: from free memory on CUDA, 1 on CPU"),
    "DEMUCS_COMPILE": ("false", "torch.compile HTDemucs on CUDA (cache: TORCHINDUCTOR_CACHE_DIR)"),
    "DEMUCS_OVERLAP": ("0.25", "Overlap between segments, as stock Demucs"),
    "DEMUCS_SHIFTS": ("0", "Random-shift passes; 0 keeps output deterministic"),
    "TORCH_THREADS": ("0", "Torch CPU threads; 0 means the cores this container may use"),
    "RENDER_PROCESSES": ("0", "Encoding processes of a render worker; 0: one per usable core"),
    "MP3_BITRATE": ("320", "Bitrate of the stem mp3s, kbps"),
    "WORKER_ID": ("", "Unique worker name; empty means <host>-<pid>"),
    "HEARTBEAT_TTL_S": ("10", "A worker silent this long is presumed dead and its jobs requeued"),
    "REAPER_INTERVAL_S": ("2", "How often each worker looks for dead workers' jobs"),
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


# Values shipped as examples (k8s/base/secret.example.env): a service never starts with one.
_PLACEHOLDER = re.compile(r"change-?me", re.IGNORECASE)


def _text(env: Mapping[str, str], name: str) -> str:
    return env.get(name, ENVIRONMENT[name][0]).strip()


def _int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    raw = _text(env, name)
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str) -> float:
    raw = _text(env, name)
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = _text(env, name).lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}={raw!r} must be true or false")


def _with_alias(env: Mapping[str, str], name: str, former: str) -> Mapping[str, str]:
    """`env` with `name` taken from its former name when only that one is set."""
    if name not in env and former in env:
        return {**env, name: env[former]}
    return env


def _precision(env: Mapping[str, str]) -> str:
    precision = _text(env, "DEMUCS_PRECISION").lower()
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise SettingsError(f"DEMUCS_PRECISION={precision!r} must be auto, fp32, bf16 or fp16")
    return precision


def _overlap(env: Mapping[str, str]) -> float:
    overlap = _float(env, "DEMUCS_OVERLAP")
    if not 0 <= overlap < 1:
        raise SettingsError(f"DEMUCS_OVERLAP={overlap} must be in [0, 1)")
    return overlap


def _models(env: Mapping[str, str]) -> tuple[str, ...]:
    """DEMUCS_MODELS as a tuple, the default first; DEMUCS_MODEL alone when it is empty."""
    models = tuple(dict.fromkeys(filter(None, (m.strip() for m in
                                               _text(env, "DEMUCS_MODELS").split(",")))))
    for model in models:
        if not model.replace("_", "").isalnum():
            raise SettingsError(f"DEMUCS_MODELS entry {model!r} is not a model name")
    return models or (_text(env, "DEMUCS_MODEL"),)


def redis_url_from(env: Mapping[str, str]) -> str:
    """Build the Redis URL; Kubernetes sets REDIS_PORT=tcp://ip:port for a Service named redis."""
    url = _text(env, "REDIS_URL")
    if url:
        return url
    host, port = _text(env, "REDIS_HOST"), _text(env, "REDIS_PORT")
    if "://" in port:
        parsed = urlsplit(port)
        if not parsed.port:
            raise SettingsError(f"REDIS_PORT={port!r} has no port number")
        port = str(parsed.port)
        if "REDIS_HOST" not in env and parsed.hostname:
            host = parsed.hostname
    if not port.isdigit():
        raise SettingsError(f"REDIS_PORT={port!r} must be a port number or tcp://host:port")
    password = _text(env, "REDIS_PASSWORD")
    auth = f":{password}@" if password else ""
    return f"redis://{auth}{host}:{port}/{_int(env, 'REDIS_DB')}"


def _api_keys(raw: str) -> dict[str, bool]:
    """Parse `key` / `key:ro` entries into {key: may_write}."""
    keys: dict[str, bool] = {}
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        key, _, role = entry.partition(":")
        if role not in ("", "rw", "ro"):
            raise SettingsError(f"API_KEYS entry for a key has role {role!r}; use ro or rw")
        keys[key] = role != "ro"
    return keys


@dataclass(frozen=True)
class Settings:
    """Everything configurable, read once at start."""

    redis_url: str = "redis://localhost:6379/0"
    minio_host: str = "localhost:9000"
    minio_access_key: str = ""
    minio_secret_key: str = ""
    minio_secure: bool = False
    minio_region: str = "us-east-1"
    songs_bucket: str = "songs"
    output_bucket: str = "output"
    max_upload_bytes: int = 100 * 1024 * 1024
    max_duration_s: int = 10800
    min_duration_s: float = 1.0
    max_callback_data_kb: int = 64
    body_timeout_s: float = 120.0
    max_concurrent_uploads: int = 4
    log_list_max: int = 1000
    log_level: str = "INFO"
    api_keys: dict[str, bool] = field(default_factory=dict)
    protect_reads: bool = False
    remove_requires_delete: bool = False
    rate_limit_per_min: int = 60
    max_queue_length: int = 1000
    proxy_hops: int = 0
    demucs_model: str = "htdemucs"
    demucs_models: tuple[str, ...] = ("htdemucs",)
    demucs_repo: str = ""
    demucs_device: str = "auto"
    demucs_precision: str = "auto"
    demucs_batch: int = 0
    demucs_compile: bool = False
    demucs_overlap: float = 0.25
    demucs_shifts: int = 0
    torch_threads: int = 0
    render_processes: int = 0
    mp3_bitrate: int = 320
    worker_id: str = ""
    heartbeat_ttl_s: int = 10
    reaper_interval_s: int = 2
    max_deaths: int = 3
    result_ttl_hours: float = 0.0
    shutdown_grace_s: int = 60
    callback_timeout_s: float = 5.0
    callback_retries: int = 3
    callback_secret: str = ""
    callback_allow_private: bool = False
    metrics_port: int = 0
    hostname: str = field(default_factory=socket.gethostname)

    def require_secrets(self) -> Settings:
        """Fail closed at start-up: no empty object-store key, no placeholder in any secret."""
        secrets = {
            "MINIO_ACCESS_KEY": self.minio_access_key,
            "MINIO_SECRET_KEY": self.minio_secret_key,
            "REDIS_PASSWORD": urlsplit(self.redis_url).password or "",
            "API_KEYS": ",".join(self.api_keys),
            "CALLBACK_SECRET": self.callback_secret,
        }
        for name in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
            if not secrets[name]:
                raise SettingsError(f"{name} is empty: set the object store's key")
        for name, value in secrets.items():
            if _PLACEHOLDER.search(value):
                raise SettingsError(f"{name} holds a placeholder: set a real secret "
                                    "(docs/deploying.md, 'Create the secret')")
        return self

    @property
    def default_model(self) -> str:
        """The model a song is separated with when none is asked for."""
        return self.demucs_models[0]

    @classmethod
    def for_service(cls, service: str) -> Settings | None:
        """Settings for a service's start-up, or None after printing which variable is wrong."""
        try:
            return cls.from_env().require_secrets()
        except SettingsError as error:
            print(f"{service}: bad configuration: {error}", file=sys.stderr)
            return None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every setting; raises SettingsError naming the bad variable."""
        env = os.environ if env is None else env
        return cls(
            redis_url=redis_url_from(env),
            minio_host=_text(env, "MINIO_HOST"),
            minio_access_key=_text(env, "MINIO_ACCESS_KEY"),
            minio_secret_key=_text(env, "MINIO_SECRET_KEY"),
            minio_secure=_bool(env, "MINIO_SECURE"),
            minio_region=_text(env, "MINIO_REGION"),
            songs_bucket=_text(env, "SONGS_BUCKET"),
            output_bucket=_text(env, "OUTPUT_BUCKET"),
            max_upload_bytes=_int(env, "MAX_UPLOAD_MB", 1) * 1024 * 1024,
            max_duration_s=_int(env, "MAX_DURATION_S", 1),
            min_duration_s=_float(env, "MIN_DURATION_S"),
            max_callback_data_kb=_int(env, "MAX_CALLBACK_DATA_KB", 1),
            body_timeout_s=_float(env, "BODY_TIMEOUT_S"),
            max_concurrent_uploads=_int(env, "MAX_CONCURRENT_UPLOADS", 1),
            log_list_max=_int(env, "LOG_LIST_MAX", 1),
            log_level=_text(env, "LOG_LEVEL").upper(),
            api_keys=_api_keys(_text(env, "API_KEYS")),
            protect_reads=_bool(env, "PROTECT_READS"),
            remove_requires_delete=_bool(env, "REMOVE_REQUIRES_DELETE"),
            rate_limit_per_min=_int(env, "RATE_LIMIT_PER_MIN"),
            max_queue_length=_int(env, "MAX_QUEUE_LENGTH", 1),
            proxy_hops=_int(env, "PROXY_HOPS"),
            demucs_model=_text(env, "DEMUCS_MODEL"),
            demucs_models=_models(env),
            demucs_repo=_text(env, "DEMUCS_REPO"),
            demucs_device=_text(env, "DEMUCS_DEVICE").lower(),
            demucs_precision=_precision(env),
            demucs_batch=_int(env, "DEMUCS_BATCH"),
            demucs_compile=_bool(env, "DEMUCS_COMPILE"),
            demucs_overlap=_overlap(env),
            demucs_shifts=_int(env, "DEMUCS_SHIFTS"),
            torch_threads=_int(env, "TORCH_THREADS"),
            render_processes=_int(env, "RENDER_PROCESSES"),
            mp3_bitrate=_int(env, "MP3_BITRATE", 8),
            worker_id=_text(env, "WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
            heartbeat_ttl_s=_int(env, "HEARTBEAT_TTL_S", 2),
            reaper_interval_s=_int(env, "REAPER_INTERVAL_S", 1),
            max_deaths=_int(_with_alias(env, "MAX_DEATHS", "MAX_ATTEMPTS"), "MAX_DEATHS", 1),
            result_ttl_hours=max(0.0, _float(env, "RESULT_TTL_HOURS")),
            shutdown_grace_s=_int(env, "SHUTDOWN_GRACE_S"),
            callback_timeout_s=_float(env, "CALLBACK_TIMEOUT_S"),
            callback_retries=_int(env, "CALLBACK_RETRIES", 1),
            callback_secret=_text(env, "CALLBACK_SECRET"),
            callback_allow_private=_bool(env, "CALLBACK_ALLOW_PRIVATE"),
            metrics_port=_int(env, "METRICS_PORT"),
        )
