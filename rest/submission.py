"""What POST /apiv1/separate receives, as JSON (`mp3` in base64) or as a multipart upload
(`file`), checked from top to bottom before anything is stored."""

from __future__ import annotations

import io
import mmap
from dataclasses import dataclass
from typing import BinaryIO, cast

from flask import Request

from common.jobs import JobStore
from common.settings import Settings
from common.tracks import Rendition
from rest.errors import ApiError, too_large
from rest.options import options_of
from rest.probe import FORMATS, AudioInfo, NotAudio, probe
from rest.upload import HashingFile
from rest.validate import callback_field, check_duration, json_object, parse_json, strict_base64


@dataclass(frozen=True)
class Submission:
    """A song the gateway accepted, read and probed, before it is stored and queued."""
    song_hash: str
    audio: BinaryIO  # positioned at its start
    size: int
    info: AudioInfo
    callback: dict | None
    model: str
    rendition: Rendition

    @property
    def ext(self) -> str:
        """The stored upload's extension: its format's, whatever the client named the file."""
        return self.info.format


def check_audio(data, settings: Settings) -> AudioInfo:
    """The upload's format and length, within the duration limits; 4xx saying why not."""
    try:
        info = probe(data, stop_after_s=settings.max_duration_s)
    except NotAudio as error:
        raise ApiError(400, f"the upload is not audio this service reads: {error}") from None
    check_duration(info.duration_s, settings)
    return info


def _from_json(request: Request, settings: Settings, jobs: JobStore) -> Submission:
    body = json_object(request)
    if "mp3" not in body:
        raise ApiError(400, "missing field mp3: send {\"mp3\": \"<base64 of the song>\"}")
    if not isinstance(body["mp3"], str):
        raise ApiError(400, "mp3 must be a string of base64 text")
    callback = callback_field(body.get("callback"), settings.callback_allow_private,
                              settings.max_callback_data_kb)
    model, rendition = options_of(body, settings, jobs)
    # Popped, so that the text's only reference is strict_base64's, which drops it once encoded.
    data, song_hash = strict_base64(body.pop("mp3"))
    if len(data) > settings.max_upload_bytes:
        raise too_large(settings.max_upload_bytes)
    info = check_audio(data, settings)
    return Submission(song_hash, io.BytesIO(data), len(data), info, callback, model, rendition)


def _callback_text(text: str | None, settings: Settings) -> dict | None:
    """The `callback` form field: the same object as in JSON, as JSON text."""
    if not text:
        return None
    value = parse_json(text, "the callback field (JSON text such as {\"url\": \"https://...\"})")
    return callback_field(value, settings.callback_allow_private, settings.max_callback_data_kb)


def _from_form(request: Request, settings: Settings, jobs: JobStore) -> Submission:
    part = request.files.get("file")
    if part is None:
        raise ApiError(400, f"send the audio ({FORMATS}) in a multipart part named file")
    upload = cast(HashingFile, part.stream)  # UploadRequest makes every file part one
    try:
        if upload.size == 0:
            raise ApiError(400, "the file part is empty: send the song's bytes")
        callback = _callback_text(request.form.get("callback"), settings)
        model, rendition = options_of(request.form, settings, jobs)
        upload.flush()
        # Probed through the page cache: the upload is never copied into this process's memory.
        with mmap.mmap(upload.fileno(), 0, access=mmap.ACCESS_READ) as view:
            info = check_audio(view, settings)
    except BaseException:
        upload.file.close()  # refused: its temporary file goes now
        raise
    upload.seek(0)
    return Submission(upload.hash.hexdigest(), upload.file, upload.size, info, callback, model,
                      rendition)


def read_submission(request: Request, settings: Settings, jobs: JobStore) -> Submission:
    """The submission a request carries, checked; ApiError saying what to fix otherwise."""
    if request.mimetype == "multipart/form-data":
        return _from_form(request, settings, jobs)
    if not request.is_json:
        raise ApiError(415, "send the body as JSON with Content-Type: application/json, or "
                            "the file as multipart/form-data in a part named file")
    return _from_json(request, settings, jobs)
