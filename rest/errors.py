"""Every error leaves the gateway as JSON `{"error": "..."}` with the right status; every
answer, OPTIONS included, is JSON and says `X-Content-Type-Options: nosniff`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from common import operations
from common.jobs import Kind, RenditionRefused, RenditionResult
from common.storage import NotFound, StorageError

log = logging.getLogger("rest")

RETRY_AFTER_S = 5


class ApiError(Exception):
    """An error a client can fix or wait out; `extra` fields join the JSON body."""

    def __init__(self, code: int, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def unavailable(message: str) -> ApiError:
    """A 503 with Retry-After: a dependency is down, the client may retry."""
    return ApiError(503, message, headers={"Retry-After": str(RETRY_AFTER_S)})


def too_large(limit_bytes: int) -> ApiError:
    """The 413 of a song over MAX_UPLOAD_MB, however it was sent (JSON, multipart, chunked)."""
    return ApiError(413, f"the song is larger than the limit of {limit_bytes // (1024 * 1024)} "
                         "MB (MAX_UPLOAD_MB), counted before base64")


@contextmanager
def stored_or_404(what: str, song_hash: str) -> Iterator[None]:
    """Inside it, a file the song's records list but the store no longer holds (removed
    behind their back) is a 404 saying so, which tells the client to resubmit the song."""
    try:
        yield
    except NotFound:
        raise ApiError(404, f"{what} of song {song_hash} is missing from the object store; "
                            "resubmit the song") from None


def _render(code: int, message: str, headers: dict | None = None, **extra):
    response = jsonify({"error": message, **extra})
    response.status_code = code
    response.headers.update(headers or {})
    return response


_HTTP_MESSAGES = {
    404: "no such route; see /apiv1/openapi.json for the API",
    408: "the request body did not arrive in time; send it faster or in a smaller upload",
}


def register_error_handlers(app: Flask) -> None:
    """Every error answered as JSON `{"error": ...}`; outages of Redis or the store as 503."""
    @app.before_request
    def options_as_json():
        if request.method == "OPTIONS":
            default = app.make_default_options_response()
            response = jsonify({"methods": sorted(default.allow)})
            response.headers["Allow"] = default.headers["Allow"]
            return response
        return None

    @app.after_request
    def no_sniffing(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return _render(error.status, error.message, error.headers, **error.extra)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = error.code or 500
        message = _HTTP_MESSAGES.get(code, error.description or error.name)
        if code == 413:  # the body passed MAX_CONTENT_LENGTH: the song's limit, base64-encoded
            return api_error(too_large(app.config["SETTINGS"].max_upload_bytes))
        allowed = getattr(error, "valid_methods", None)  # a 405's
        headers = {"Allow": ", ".join(allowed)} if allowed else {}
        if code == 408:
            headers["Connection"] = "close"  # the rest of the body may still come
        return _render(code, message, headers)

    @app.errorhandler(redis.RedisError)
    def redis_down(error: redis.RedisError):
        log.error("Redis unavailable: %s", error)
        return api_error(unavailable("the job queue (Redis) is unavailable; retry shortly"))

    @app.errorhandler(RenditionRefused)
    def rendition_refused(refused: RenditionRefused):
        settings = app.config["SETTINGS"]
        if refused.result is RenditionResult.QUEUE_FULL:
            return api_error(unavailable(f"the render queue is full "
                                         f"({settings.max_queue_length} jobs); retry later"))
        have = sorted(job.rendition for job in app.extensions["jobs"].song_jobs(refused.song_hash)
                      if job.kind is Kind.RENDER and job.rendition not in operations.STUDIO)
        return api_error(ApiError(
            409, f"song {refused.song_hash} has {settings.max_renditions_per_song} renditions "
                 f"already, the most one song may have; ask for one of them: {', '.join(have)}",
            renditions=have))

    @app.errorhandler(StorageError)
    def storage_down(error: StorageError):
        log.error("object store unavailable: %s", error)
        return api_error(unavailable("the object store is unavailable; retry shortly"))

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unexpected error")
        return _render(500, "internal error; the request was not processed")
