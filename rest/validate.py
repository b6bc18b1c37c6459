"""Checks on everything a client sends, each failing early with a message that says what to fix."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from common.netguard import UnsafeUrl, check_callback_url
from rest.errors import ApiError
from rest.mp3probe import NotAnMp3, probe

_HASH = re.compile(r"[0-9a-f]{64}")
_TRACK = re.compile(r"[a-z][a-z0-9_]{0,31}(\.mp3)?")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"
TRACK_ALIASES = {"base": "bass"}  # the original design's spelling


@dataclass(frozen=True)
class Submission:
    song_hash: str
    mp3: bytes
    callback: dict | None
    duration_s: float


def song_hash_param(value: str) -> str:
    if not _HASH.fullmatch(value):
        raise ApiError(400, "songhash must be the 64 lowercase hex characters returned by "
                            "/apiv1/separate")
    return value


def track_param(value: str) -> str:
    """The stem file name a track parameter names: `base`, `bass.mp3` -> `bass.mp3`."""
    if not _TRACK.fullmatch(value):
        raise ApiError(400, "track must be a stem name such as bass.mp3, drums.mp3, "
                            "vocals.mp3 or other.mp3")
    stem = value.removesuffix(".mp3")
    return f"{TRACK_ALIASES.get(stem, stem)}.mp3"


def json_object(request: Request) -> dict:
    """The request body as a JSON object."""
    if not request.is_json:
        raise ApiError(415, "send the body as JSON with Content-Type: application/json")
    raw = request.get_data(cache=False)
    limit = request.max_content_length
    if limit is not None and len(raw) >= limit:
        # A body without Content-Length (chunked) is cut at the limit rather than refused.
        raise RequestEntityTooLarge()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object such as {\"mp3\": \"<base64>\"}")
    return body


def strict_base64(text: str) -> tuple[bytes, str]:
    """Decode standard base64, ignoring ASCII whitespace; returns (bytes, hash of the text)."""
    if text.lstrip().startswith("data:"):
        raise ApiError(400, "mp3 must be plain base64, without a data: URL prefix")
    try:
        compact = text.encode("ascii").translate(None, _ASCII_WHITESPACE)
    except UnicodeEncodeError:
        raise ApiError(400, "mp3 holds characters that are not base64") from None
    if not compact:
        raise ApiError(400, "mp3 is empty: send the song's bytes, base64-encoded")
    if not _BASE64.fullmatch(compact):
        raise ApiError(400, "mp3 holds characters outside the standard base64 alphabet "
                            "(A-Z a-z 0-9 + / and = padding)")
    if len(compact) % 4:
        raise ApiError(400, "mp3 has the wrong base64 padding: its length must be a "
                            "multiple of 4 (pad with =)")
    try:
        data = base64.b64decode(compact, validate=True)
    except binascii.Error as error:
        raise ApiError(400, f"mp3 is not valid base64: {error}") from None
    return data, hashlib.sha256(compact).hexdigest()


def callback_field(value, allow_private: bool) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(400, "callback must be an object {\"url\": ..., \"data\": ...}")
    url = value.get("url")
    if not isinstance(url, str) or not url:
        raise ApiError(400, "callback.url must be a non-empty string")
    try:
        check_callback_url(url, allow_private)
    except UnsafeUrl as error:
        raise ApiError(400, str(error)) from None
    return {"url": url, "data": value.get("data")}


def submission(body: dict, max_bytes: int, max_duration_s: int,
               allow_private: bool) -> Submission:
    """Check a /apiv1/separate body from top to bottom."""
    if "mp3" not in body:
        raise ApiError(400, "missing field mp3: send {\"mp3\": \"<base64 of the song>\"}")
    if not isinstance(body["mp3"], str):
        raise ApiError(400, "mp3 must be a string of base64 text")
    callback = callback_field(body.get("callback"), allow_private)
    data, song_hash = strict_base64(body["mp3"])
    if len(data) > max_bytes:
        raise ApiError(413, f"the mp3 is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        info = probe(data)
    except NotAnMp3 as error:
        raise ApiError(400, f"mp3 is not an MP3 file: {error}") from None
    if info.duration_s > max_duration_s:
        raise ApiError(422, f"the song plays for {info.duration_s:.0f} s; the limit is "
                            f"{max_duration_s} s")
    return Submission(song_hash, data, callback, info.duration_s)
