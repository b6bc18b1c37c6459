"""The OpenAPI 3 description of the gateway, served at /apiv1/openapi.json."""

from __future__ import annotations

_ERROR = {"$ref": "#/components/responses/Error"}
_HASH = {"name": "songhash", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
_TRACK = {"name": "track", "in": "path", "required": True,
          "description": "bass.mp3 (or base.mp3), drums.mp3, vocals.mp3, other.mp3; "
                         "the .mp3 suffix may be omitted",
          "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}(\\.mp3)?$"}}


def _json(schema_name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}


def _errors(*codes: int) -> dict:
    return {str(code): _ERROR for code in codes}


_REMOVE = {
    "summary": "Remove one stem of a separated song",
    "parameters": [_HASH, _TRACK],
    "responses": {"200": _json("Removed", "The stem was removed"),
                  **_errors(400, 401, 403, 404, 429, 503)},
}
_REMOVE_BY_GET = {
    **_REMOVE,
    "description": "Kept for the original clients. A link or an <img> on another site can "
                   "make a browser send it (CSRF); with REMOVE_REQUIRES_DELETE it answers 405. "
                   "HEAD never removes.",
    "responses": {**_REMOVE["responses"], **_errors(405)},
}

_PATHS = {
    "/apiv1/separate": {"post": {
        "summary": "Submit a song for separation",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Submission"}}}},
        "responses": {"200": _json("Accepted", "Enqueued, or already known"),
                      **_errors(400, 401, 403, 408, 413, 415, 422, 429, 503)},
    }},
    "/apiv1/queue": {"get": {
        "summary": "Hashes waiting for a worker, oldest first",
        "responses": {"200": _json("Queue", "The queue"), **_errors(401, 503)},
    }},
    "/apiv1/status/{songhash}": {"get": {
        "summary": "Status and progress of a song",
        "parameters": [_HASH],
        "responses": {"200": _json("Status", "The job record"), **_errors(400, 401, 404, 503)},
    }},
    "/apiv1/track/{songhash}/{track}": {"get": {
        "summary": "Download one stem",
        "parameters": [_HASH, _TRACK],
        "responses": {"200": {"description": "The stem",
                              "content": {"audio/mpeg": {"schema": {
                                  "type": "string", "format": "binary"}}}},
                      **_errors(400, 401, 404, 503)},
    }},
    "/apiv1/remove/{songhash}/{track}": {"get": _REMOVE_BY_GET, "delete": _REMOVE},
    "/apiv1/openapi.json": {"get": {
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3 document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }},
    "/healthz": {"get": {
        "summary": "The process is alive",
        "responses": {"200": _json("Health", "Alive")},
    }},
    "/readyz": {"get": {
        "summary": "Redis and the object store are reachable",
        "responses": {"200": _json("Health", "Ready"), **_errors(503)},
    }},
}

_SCHEMAS = {
    "Submission": {"type": "object", "required": ["mp3"], "properties": {
        "mp3": {"type": "string", "description": "The mp3 file, standard base64 "
                                                 "(whitespace ignored)"},
        "callback": {"type": "object", "required": ["url"], "properties": {
            "url": {"type": "string", "maxLength": 2048,
                    "description": "http(s) URL that receives `data` as JSON when the job ends"},
            "data": {"description": "Any JSON value, posted back as is: at most "
                                    "MAX_CALLBACK_DATA_KB (64 KiB) nested at most 32 deep"},
        }},
    }},
    "Accepted": {"type": "object", "required": ["hash", "reason"], "properties": {
        "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "reason": {"type": "string"},
    }},
    "Queue": {"type": "object", "required": ["queue"], "properties": {
        "queue": {"type": "array", "items": {"type": "string"}},
    }},
    "Status": {"type": "object", "required": ["hash", "status", "tracks", "error", "progress"],
               "properties": {
        "hash": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "processing", "done", "failed"]},
        "tracks": {"type": "array", "items": {"type": "string"}},
        "error": {"type": ["string", "null"]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "attempts": {"type": "integer"},
        "callback": {"type": ["string", "null"]},
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
    }},
    "Removed": {"type": "object", "required": ["hash", "track", "reason"], "properties": {
        "hash": {"type": "string"}, "track": {"type": "string"}, "reason": {"type": "string"},
    }},
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"}}},
    "Error": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string", "description": "What went wrong and how to fix it"},
    }},
}


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Micro Demucs", "version": "1.0.0",
                 "description": "Music source separation: submit an mp3, download four stems."},
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "responses": {"Error": _json("Error", "An error, as JSON")},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
