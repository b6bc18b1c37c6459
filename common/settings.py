"""Settings read once from the environment into a frozen dataclass.

Every variable the services read is listed in `ENVIRONMENT` (common/environment.py), with its
default, so that the README, docker-compose.yml and the Kubernetes ConfigMap can be checked
against one list.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common.environment import ENVIRONMENT


class SettingsError(ValueError):
    """An environment variable holds a value the services cannot use."""


# Values shipped as examples (k8s/base/secrets/*.env): a service never starts with one.
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
    """DEMUCS_MODELS as a tuple, duplicates dropped; DEMUCS_MODEL alone when it is empty."""
    models = tuple(dict.fromkeys(filter(None, (m.strip() for m in
                                               _text(env, "DEMUCS_MODELS").split(",")))))
    for model in models:
        if not model.replace("_", "").isalnum():
            raise SettingsError(f"DEMUCS_MODELS entry {model!r} is not a model name")
    return models or (_text(env, "DEMUCS_MODEL"),)


def _served_models(env: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """(DEFAULT_MODEL, the models served with it first). The default is named, never taken
    from the order of DEMUCS_MODELS: it decides every job id and queue name (docs/jobs.md)."""
    models = _models(env)
    default = _text(env, "DEFAULT_MODEL")
    if not default and len(models) > 1:
        raise SettingsError(f"DEFAULT_MODEL is empty while DEMUCS_MODELS names {len(models)} "
                            f"models: set it to the one of {', '.join(models)} a song gets "
                            "when it names none")
    default = default or models[0]
    if default not in models:
        raise SettingsError(f"DEFAULT_MODEL={default!r} is not one of the models served "
                            f"({', '.join(models)}): add it to DEMUCS_MODELS")
    return default, (default, *(model for model in models if model != default))


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


ROLES = ("ro", "rw", "admin")  # read; read and write its own songs; write any song


def _api_keys(raw: str) -> dict[str, str]:
    """Parse `key`, `key:ro`, `key:rw` and `key:admin` entries into {key: role}."""
    keys: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        key, _, role = entry.partition(":")
        if role not in ("", *ROLES):
            raise SettingsError(f"API_KEYS entry for a key has role {role!r}; use "
                                f"{', '.join(ROLES)}")
        keys[key] = role or "rw"
    return keys


@dataclass(frozen=True)
class Settings:
    """Everything configurable, read once at start by `from_env`; the defaults are those of
    ENVIRONMENT, the one list of them."""

    redis_url: str
    minio_host: str
    minio_access_key: str
    minio_secret_key: str
    minio_secure: bool
    minio_region: str
    store_timeout_s: float
    songs_bucket: str
    output_bucket: str
    max_upload_bytes: int
    max_duration_s: int
    min_duration_s: float
    max_callback_data_kb: int
    body_timeout_s: float
    max_concurrent_uploads: int
    log_list_max: int
    log_level: str
    api_keys: dict[str, str]  # key -> role: ro, rw or admin
    protect_reads: bool
    remove_requires_delete: bool
    rate_limit_per_min: int
    max_queue_length: int
    max_renditions_per_song: int
    proxy_hops: int
    demucs_model: str
    default_model: str
    demucs_models: tuple[str, ...]  # the default first
    models_dir: str  # MODELS_DIR, else its old name DEMUCS_REPO
    demucs_repo: str  # the same folder, under the name older code reads
    demucs_device: str
    demucs_precision: str
    demucs_batch: int
    demucs_compile: bool
    demucs_overlap: float
    demucs_shifts: int
    torch_threads: int
    render_processes: int
    mp3_bitrate: int
    worker_id: str
    heartbeat_ttl_s: int
    reaper_interval_s: int
    stall_timeout_s: int
    max_deaths: int
    result_ttl_hours: float
    shutdown_grace_s: int
    callback_timeout_s: float
    callback_retries: int
    callback_secret: str
    callback_allow_private: bool
    metrics_port: int
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
        default_model, demucs_models = _served_models(env)
        return cls(
            redis_url=redis_url_from(env),
            minio_host=_text(env, "MINIO_HOST"),
            minio_access_key=_text(env, "MINIO_ACCESS_KEY"),
            minio_secret_key=_text(env, "MINIO_SECRET_KEY"),
            minio_secure=_bool(env, "MINIO_SECURE"),
            minio_region=_text(env, "MINIO_REGION"),
            store_timeout_s=_float(env, "STORE_TIMEOUT_S"),
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
            max_renditions_per_song=_int(env, "MAX_RENDITIONS_PER_SONG", 1),
            proxy_hops=_int(env, "PROXY_HOPS"),
            demucs_model=_text(env, "DEMUCS_MODEL"),
            default_model=default_model,
            demucs_models=demucs_models,
            models_dir=_text(env, "MODELS_DIR") or _text(env, "DEMUCS_REPO"),
            demucs_repo=_text(env, "MODELS_DIR") or _text(env, "DEMUCS_REPO"),
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
            stall_timeout_s=_int(env, "STALL_TIMEOUT_S", 2),
            max_deaths=_int(_with_alias(env, "MAX_DEATHS", "MAX_ATTEMPTS"), "MAX_DEATHS", 1),
            result_ttl_hours=max(0.0, _float(env, "RESULT_TTL_HOURS")),
            shutdown_grace_s=_int(env, "SHUTDOWN_GRACE_S"),
            callback_timeout_s=_float(env, "CALLBACK_TIMEOUT_S"),
            callback_retries=_int(env, "CALLBACK_RETRIES", 1),
            callback_secret=_text(env, "CALLBACK_SECRET"),
            callback_allow_private=_bool(env, "CALLBACK_ALLOW_PRIVATE"),
            metrics_port=_int(env, "METRICS_PORT"),
        )
