"""What needs no key: the health probes and the API's own description."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint

from common.storage import StorageError
from rest import access, openapi
from rest import context as ctx
from rest.errors import unavailable

log = logging.getLogger("rest")
health = Blueprint("health", __name__)
access.declare(open_endpoints={"health.healthz", "health.readyz", "health.openapi_document"})


@health.get("/apiv1/openapi.json")
def openapi_document():
    return openapi.document()


@health.get("/healthz")
def healthz():
    return {"status": "alive"}


@health.get("/readyz")
def readyz():
    """200 once Redis answers and both buckets exist (made here on a fresh store); else 503."""
    # Anonymous callers learn only whether the gateway is ready; what failed goes to the log.
    problems = {}
    try:
        ctx.redis_client().ping()
    except redis.RedisError as error:
        problems["redis"] = error
    try:
        ctx.storage().ensure_buckets()  # a fresh store gets them here: no one-shot setup job
    except StorageError as error:
        problems["object store"] = error
    if problems:
        log.error("not ready: %s", "; ".join(f"{k}: {v}" for k, v in problems.items()))
        raise unavailable("not ready")
    return {"status": "ready"}
