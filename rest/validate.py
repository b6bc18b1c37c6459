"""Checks on everything a client sends, each failing early with a message that says what to fix."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from common.netguard import UnsafeUrl, check_callback_url
from common.settings import Settings
from rest.errors import ApiError

_HASH = re.compile(r"[0-9a-f]{64}")
_TRACK = re.compile(r"[a-z][a-z0-9_]{0,31}(\.(mp3|wav|flac))?")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
MAX_JSON_DEPTH = 32  # nesting of arrays and objects, far beyond any callback.data in use
_WHITESPACE = re.compile(rb"[ \t\n\r\x0b\x0c]")


def song_hash_param(value: str) -> str:
    """The song hash of a URL, or 400 saying what a hash looks like."""
    if not _HASH.fullmatch(value):
        raise ApiError(400, "songhash must be the 64 lowercase hex characters returned by "
                            "/apiv1/separate")
    return value


def track_param(value: str) -> str:
    """A track parameter, `<stem>[.<ext>]` (common.tracks parses it), before any lookup."""
    if not _TRACK.fullmatch(value):
        raise ApiError(400, "track must be <stem>.<ext> such as bass.mp3, vocals.flac or "
                            "no_vocals.wav (ext mp3, wav or flac)")
    return value


def json_object(request: Request, example: str = '{"mp3": "<base64>"}') -> dict:
    """The request body as a JSON object (strict JSON: no NaN); `example` shows one."""
    if not request.is_json:
        raise ApiError(415, "send the body as JSON with Content-Type: application/json")
    raw = request.get_data(cache=False)
    limit = request.max_content_length
    if limit is not None and len(raw) >= limit:
        # A body without Content-Length (chunked) is cut at the limit rather than refused.
        raise RequestEntityTooLarge()
    try:
        # Decoded here and the bytes dropped, so that parsing holds two copies, not three.
        text = raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError as error:
        raise ApiError(400, f"the body is not valid JSON: {error}") from None
    del raw
    body = parse_json(text, "the body")
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object such as {example}")
    return body


def _not_json(constant: str):
    """Python's json reads NaN, Infinity and -Infinity, which JSON does not have."""
    raise ValueError(f"{constant} is not a JSON value (send a number, a string or null)")


def parse_json(text: bytes | str, what: str):
    """Parsed JSON, refused (400) when invalid (NaN and Infinity too) or nested deeper than
    MAX_JSON_DEPTH."""
    try:
        value = json.loads(text, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"{what} is not valid JSON: {error}") from None
    except RecursionError:
        value = None
        deep = True
    else:
        deep = not _depth_within(value, MAX_JSON_DEPTH)
    if deep:
        raise ApiError(400, f"{what} nests arrays and objects deeper than {MAX_JSON_DEPTH} "
                            "levels")
    return value


def _depth_within(value, limit: int) -> bool:
    """Whether `value` nests lists and dicts at most `limit` deep (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(
            item, list) else ()
        if children and depth >= limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def strict_base64(text: str) -> tuple[bytes, str]:
    """Decode standard base64, ignoring ASCII whitespace; returns (bytes, hash of the text)."""
    if text[:64].lstrip().startswith("data:"):
        raise ApiError(400, "mp3 must be plain base64, without a data: URL prefix")
    try:
        compact = text.encode("ascii")
    except UnicodeEncodeError:
        raise ApiError(400, "mp3 holds characters that are not base64") from None
    del text  # a caller that passes its only reference frees the text here, not at return
    if _WHITESPACE.search(compact):
        compact = compact.translate(None, _ASCII_WHITESPACE)
    if not compact:
        raise ApiError(400, "mp3 is empty: send the song's bytes, base64-encoded")
    if not _BASE64.fullmatch(compact):
        raise ApiError(400, "mp3 holds characters outside the standard base64 alphabet "
                            "(A-Z a-z 0-9 + / and = padding)")
    if len(compact) % 4:
        raise ApiError(400, "mp3 has the wrong base64 padding: its length must be a "
                            "multiple of 4 (pad with =)")
    _refuse_stray_bits(compact)
    try:
        data = base64.b64decode(compact, validate=True)
    except binascii.Error as error:
        raise ApiError(400, f"mp3 is not valid base64: {error}") from None
    return data, hashlib.sha256(compact).hexdigest()


def _refuse_stray_bits(compact: bytes) -> None:
    """Refuse set bits after the last byte: another text of the same bytes, so another hash."""
    padding = len(compact) - len(compact.rstrip(b"="))
    if padding and _ALPHABET.index(compact[-padding - 1]) & (0x0F if padding == 2 else 0x03):
        raise ApiError(400, "mp3 is not canonical base64: the bits after the last byte, in "
                            "the character before the = padding, must be zero")


def callback_field(value, allow_private: bool, max_data_kb: int = 64) -> dict | None:
    """A submission's `callback` checked (safe URL, bounded data); else 400/413 saying why."""
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
    data = value.get("data")
    if not _depth_within(data, MAX_JSON_DEPTH):  # iterative: safe to serialise afterwards
        raise ApiError(400, f"callback.data nests arrays and objects deeper than "
                            f"{MAX_JSON_DEPTH} levels")
    size = len(json.dumps(data, separators=(",", ":")).encode())
    if size > max_data_kb * 1024:
        raise ApiError(413, f"callback.data is {size} bytes of JSON; the limit is "
                            f"{max_data_kb} KiB")
    return {"url": url, "data": data}


def check_duration(seconds: float, settings: Settings) -> None:
    """422 unless the audio plays between MIN_DURATION_S and MAX_DURATION_S."""
    if seconds > settings.max_duration_s:
        raise ApiError(422, f"the song plays for {seconds:.0f} s or more; the limit is "
                            f"{settings.max_duration_s} s")
    if seconds < settings.min_duration_s:
        raise ApiError(422, f"the song plays for {seconds:.2f} s; the shortest accepted is "
                            f"{settings.min_duration_s:g} s")
