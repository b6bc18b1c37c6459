"""OpenAPI of the songs: submission, queue, status, downloads, models, ensembles, removal."""

from __future__ import annotations

from typing import Any

from common.tracks import FORMATS, MP3_BITRATES
from rest.openapi.parts import (
    BITRATE,
    BITS,
    FORMAT,
    HASH,
    MODEL,
    errors,
    json_body,
    json_response,
    query,
)
from rest.probe import FORMATS as ACCEPTED

_TRACK = {"name": "track", "in": "path", "required": True,
          "description": "<stem>.<ext> or no_<stem>.<ext> (two-stem rendition): bass.mp3 (or "
                         "base.mp3), drums.mp3, vocals.flac, no_vocals.wav, guitar.mp3 "
                         "(htdemucs_6s); without an extension, .mp3",
          "schema": {"type": "string",
                     "pattern": "^[a-z][a-z0-9_]{0,31}(\\.(mp3|wav|flac))?$"}}
_TWO_STEMS = query("two_stems", "A stem: the rendition is that stem and no_<stem>, the sum of "
                                "the others", {"type": "string"})
_OPTION_PROPERTIES = {
    "model": {"type": "string", "description": MODEL["description"]},
    "two_stems": {"type": "string", "description": _TWO_STEMS["description"]},
    "format": {"type": "string", "enum": list(FORMATS), "description": FORMAT["description"]},
    "bits": {"type": "integer", "enum": [16, 24], "description": BITS["description"]},
    "bitrate": {"type": "integer", "enum": list(MP3_BITRATES),
                "description": BITRATE["description"]},
}
_RENDERING = {"description": "The rendition is being made from the song's stems; ask again "
                             "after Retry-After seconds",
              "headers": {"Retry-After": {"schema": {"type": "integer"}}},
              "content": {"application/json": {"schema": {"type": "object", "properties": {
                  "hash": {"type": "string"}, "model": {"type": "string"},
                  "rendition": {"type": "string"}, "reason": {"type": "string"},
                  "status": {"type": "string", "enum": ["enqueued", "queued", "processing"]},
              }}}}}

_REMOVE: dict[str, Any] = {
    "summary": "Remove one track of a separated song",
    "parameters": [HASH, _TRACK, MODEL, BITS, BITRATE],
    "responses": {"200": json_response("Removed", "The stem was removed"),
                  **errors(400, 401, 403, 404, 429, 503)},
}
_REMOVE_BY_GET = {
    **_REMOVE,
    "description": "Kept for the original clients. A link or an <img> on another site can "
                   "make a browser send it (CSRF); with REMOVE_REQUIRES_DELETE it answers 405. "
                   "HEAD never removes.",
    "responses": {**_REMOVE["responses"], **errors(405)},
}

PATHS = {
    "/apiv1/separate": {"post": {
        "summary": "Submit a song for separation",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Submission"}},
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/Upload"}}}},
        "responses": {"200": json_response("Accepted", "Enqueued, or already known"),
                      **errors(400, 401, 403, 408, 413, 415, 422, 429, 503)},
    }},
    "/apiv1/queue": {"get": {
        "summary": "Hashes waiting for a worker, oldest first (with API_KEYS: the caller's own), "
                   "and how many jobs wait and run",
        "parameters": [query("model", "A model this service offers: its queue; default: the "
                                      "first model's (toWorker)", {"type": "string"})],
        "responses": {"200": json_response("Queue", "The queue"), **errors(400, 401, 503)},
    }},
    "/apiv1/status/{songhash}": {"get": {
        "summary": "Status and progress of a song, its options and every track ready",
        "parameters": [HASH, MODEL],
        "responses": {"200": json_response("Status", "The job record"),
                      **errors(400, 401, 404, 503)},
    }},
    "/apiv1/track/{songhash}/{track}": {"get": {
        "summary": "Download one track of any rendition (made on first request)",
        "parameters": [HASH, _TRACK, MODEL, BITS, BITRATE],
        "responses": {"200": {"description": "The track",
                              "content": {mime: {"schema": {"type": "string", "format": "binary"}}
                                          for mime in sorted({f.mime for f in FORMATS.values()})}},
                      "202": _RENDERING, **errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/zip/{songhash}": {"get": {
        "summary": "Download every track of a rendition as one zip (<stem>.<ext> entries)",
        "parameters": [HASH, MODEL, FORMAT, _TWO_STEMS, BITS, BITRATE],
        "responses": {"200": {"description": "The zip, streamed", "content": {
                          "application/zip": {"schema": {"type": "string", "format": "binary"}}}},
                      "202": _RENDERING, **errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/models": {"get": {
        "summary": "The models this service offers: stems, family, quality, speed",
        "responses": {"200": json_response("Models", "The models, the default first"),
                      **errors(401, 503)},
    }},
    "/apiv1/cancel/{songhash}": {"post": {
        "summary": "Cancel a song's separation: queued, it leaves the queue; running, it stops",
        "parameters": [HASH, MODEL],
        "responses": {"200": json_response("Cancelled",
                                           "Cancelled, or stopping at its next segment"),
                      **errors(400, 401, 403, 404, 409, 429, 503)},
    }},
    "/apiv1/ensemble/{songhash}": {"post": {
        "summary": "Stems of a song made from several models': avg, max_spec, min_spec or pick; "
                   "follow it with ?model=<the answer's model> on status, track and zip",
        "parameters": [HASH],
        "requestBody": json_body("EnsembleSpec"),
        "responses": {"202": json_response("Ensemble", "Queued, waiting for its members, or known"),
                      **errors(400, 401, 403, 404, 429, 503)},
    }},
    "/apiv1/song/{songhash}": {"delete": {
        "summary": "Delete a song: its upload, every stem and rendition of every model, its jobs",
        "parameters": [HASH],
        "responses": {"200": json_response("Deleted", "Everything of the song is gone"),
                      **errors(400, 401, 403, 404, 429, 503)},
    }},
    "/apiv1/remove/{songhash}/{track}": {"get": _REMOVE_BY_GET, "delete": _REMOVE},
}

SCHEMAS = {
    "Submission": {"type": "object", "required": ["mp3"], "properties": {
        "mp3": {"type": "string", "description": f"The audio file ({ACCEPTED}), standard base64 "
                                                 "(whitespace ignored)"},
        **_OPTION_PROPERTIES,
        "callback": {"type": "object", "required": ["url"], "properties": {
            "url": {"type": "string", "maxLength": 2048,
                    "description": "http(s) URL that receives `data` as JSON when the job ends"},
            "data": {"description": "Any JSON value, posted back as is: at most "
                                    "MAX_CALLBACK_DATA_KB (64 KiB) nested at most 32 deep"},
        }},
    }},
    "Upload": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": f"The audio file ({ACCEPTED}); the hash is that of its "
                                "standard base64 text"},
        "callback": {"type": "string", "description": "The callback object, as JSON text"},
        **_OPTION_PROPERTIES,
    }},
    "Accepted": {"type": "object", "required": ["hash", "reason"], "properties": {
        "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "reason": {"type": "string"},
    }},
    "Queue": {"type": "object", "required": ["queue", "length", "in_flight"], "properties": {
        "queue": {"type": "array", "items": {"type": "string"}},
        "length": {"type": "integer"},
        "in_flight": {"type": "integer"},
    }},
    "Status": {"type": "object", "required": ["hash", "status", "tracks", "error", "progress"],
               "properties": {
        "hash": {"type": "string"},
        "status": {"type": "string",
                   "enum": ["queued", "processing", "done", "failed", "cancelled"]},
        "tracks": {"type": "array", "items": {"type": "string"}},
        "error": {"type": ["string", "null"]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "position": {"type": "integer", "minimum": 1,
                     "description": "While queued: 1-based place in its model's queue"},
        "queue_length": {"type": "integer", "minimum": 1,
                         "description": "While queued: songs waiting in that queue"},
        "attempts": {"type": "integer"},
        "callback": {"type": ["string", "null"]},
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        "options": {"type": "object", "properties": _OPTION_PROPERTIES,
                    "description": "What the submission asked for"},
        "ready": {"type": "array", "items": {"type": "object", "properties": {
            "track": {"type": "string"}, "model": {"type": "string"},
            "format": {"type": "string"}, "bits": {"type": "integer"},
            "bitrate": {"type": "integer"}, "rendition": {"type": "string"},
            "url": {"type": "string"}}}, "description": "Every track ready to download"},
    }},
    "Models": {"type": "object", "required": ["models"], "properties": {
        "models": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "default": {"type": "boolean"},
            "stems": {"type": "array", "items": {"type": "string"}},
            "family": {"type": ["string", "null"],
                       "enum": ["demucs", "bs_roformer", "mel_band_roformer", None]},
            "title": {"type": ["string", "null"]},
            "sample_rate": {"type": ["integer", "null"]},
            "chunk_s": {"type": ["number", "null"], "description": "Seconds per model chunk"},
            "parameters": {"type": ["integer", "null"], "description": "Weights, as loaded"},
            "ready": {"type": "boolean", "description": "A worker of it is alive"},
            "workers": {"type": "integer"},
            "catalogued": {"type": "boolean"},
            "quality": {"type": "array", "description": "Published SDR (dB) per stem",
                        "items": {"type": "object", "properties": {
                            "dataset": {"type": "string"}, "source": {"type": "string"},
                            "sdr": {"type": "object",
                                    "additionalProperties": {"type": "number"}}}}},
            "speed": {"type": "object", "description": "Measured here, by device: real-time "
                      "factor = seconds of work per second of audio",
                      "additionalProperties": {"type": "object", "properties": {
                          "jobs": {"type": "integer"}, "audio_s": {"type": "number"},
                          "rtf": {"type": ["number", "null"]},
                          "rtf_recent": {"type": ["number", "null"]}}}}}}},
    }},
    "EnsembleSpec": {"type": "object", "properties": {
        "algorithm": {"type": "string", "enum": ["avg", "max_spec", "min_spec", "pick"]},
        "members": {"type": "array", "items": {"type": "string"}, "description": "Models"},
        "picks": {"type": "object", "additionalProperties": {"type": "string"},
                  "description": "stem -> the member it is taken from"},
        "callback": {"type": "object", "required": ["url"],
                     "description": "As a submission's: `data` posted to `url` when the "
                                    "ensemble ends (done, or failed as soon as a member fails)",
                     "properties": {"url": {"type": "string", "maxLength": 2048},
                                    "data": {}}}}},
    "Ensemble": {"type": "object", "required": ["hash", "model", "status", "stems"],
                 "properties": {
        "hash": {"type": "string"}, "model": {"type": "string"}, "status": {"type": "string"},
        "reason": {"type": "string"}, "algorithm": {"type": "string"},
        "members": {"type": "object", "additionalProperties": {"type": "string"}},
        "picks": {"type": "object"}, "stems": {"type": "array", "items": {"type": "string"}},
        "status_url": {"type": "string"}}},
    "Cancelled": {"type": "object", "required": ["hash", "reason", "status"], "properties": {
        "hash": {"type": "string"}, "model": {"type": "string"}, "reason": {"type": "string"},
        "status": {"type": "string", "enum": ["cancelled", "stopping"]},
    }},
    "Deleted": {"type": "object", "required": ["hash", "reason"], "properties": {
        "hash": {"type": "string"}, "reason": {"type": "string"},
        "jobs": {"type": "integer"}, "objects": {"type": "integer"},
    }},
    "Removed": {"type": "object", "required": ["hash", "track", "reason"], "properties": {
        "hash": {"type": "string"}, "track": {"type": "string"}, "reason": {"type": "string"},
    }},
}
