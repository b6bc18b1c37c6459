"""What every route reaches for: the settings, the job store and the object store."""

from __future__ import annotations

import redis
from flask import current_app

from common import tracks
from common.jobs import JobStore
from common.settings import Settings
from common.storage import Storage


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def jobs() -> JobStore:
    return current_app.extensions["jobs"]


def storage() -> Storage:
    return current_app.extensions["storage"]


def default_rendition() -> tracks.Rendition:
    """What a submission without options asks for: every stem as mp3 at MP3_BITRATE."""
    return tracks.default_rendition(settings().mp3_bitrate)


def redis_client() -> redis.Redis:
    return current_app.extensions["redis"]
