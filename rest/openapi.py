"""The OpenAPI 3 description of the gateway, served at /apiv1/openapi.json."""

from __future__ import annotations

from typing import Any

from common.tracks import FORMATS, MP3_BITRATES
from rest.probe import FORMATS as ACCEPTED

_ERROR = {"$ref": "#/components/responses/Error"}
_HASH = {"name": "songhash", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
_TRACK = {"name": "track", "in": "path", "required": True,
          "description": "<stem>.<ext> or no_<stem>.<ext> (two-stem rendition): bass.mp3 (or "
                         "base.mp3), drums.mp3, vocals.flac, no_vocals.wav, guitar.mp3 "
                         "(htdemucs_6s); without an extension, .mp3",
          "schema": {"type": "string",
                     "pattern": "^[a-z][a-z0-9_]{0,31}(\\.(mp3|wav|flac))?$"}}


def _query(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_MODEL = _query("model", "A model this service offers (GET /apiv1/models); default: the first",
                {"type": "string"})
_BITS = _query("bits", "wav and flac: bits per sample (16 default, or 24)",
               {"type": "integer", "enum": [16, 24]})
_BITRATE = _query("bitrate", "mp3: kbps (default MP3_BITRATE, 320)",
                  {"type": "integer", "enum": list(MP3_BITRATES)})
_FORMAT = _query("format", "mp3 (default), wav or flac", {"type": "string",
                                                          "enum": list(FORMATS)})
_TWO_STEMS = _query("two_stems", "A stem: the rendition is that stem and no_<stem>, the sum of "
                                 "the others", {"type": "string"})
_OPTION_PROPERTIES = {
    "model": {"type": "string", "description": _MODEL["description"]},
    "two_stems": {"type": "string", "description": _TWO_STEMS["description"]},
    "format": {"type": "string", "enum": list(FORMATS), "description": _FORMAT["description"]},
    "bits": {"type": "integer", "enum": [16, 24], "description": _BITS["description"]},
    "bitrate": {"type": "integer", "enum": list(MP3_BITRATES),
                "description": _BITRATE["description"]},
}
_RENDERING = {"description": "The rendition is being made from the song's stems; ask again "
                             "after Retry-After seconds",
              "headers": {"Retry-After": {"schema": {"type": "integer"}}},
              "content": {"application/json": {"schema": {"type": "object", "properties": {
                  "hash": {"type": "string"}, "model": {"type": "string"},
                  "rendition": {"type": "string"}, "reason": {"type": "string"},
                  "status": {"type": "string", "enum": ["enqueued", "queued", "processing"]},
              }}}}}

# The studio's operations (waveform peaks, analysis, mixes), made by a render worker on request.
_MADE = {"description": "Being made from the song's stems; ask again after Retry-After seconds "
                        "at Location",
         "headers": {"Retry-After": {"schema": {"type": "integer"}},
                     "Location": {"schema": {"type": "string"}}}}
_FILE = {"description": "The file, whole (200) or the byte range asked for (206)",
         "content": {"application/octet-stream": {"schema": {"type": "string",
                                                             "format": "binary"}}}}


def _json(schema_name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}


def _errors(*codes: int) -> dict:
    return {str(code): _ERROR for code in codes}


_REMOVE: dict[str, Any] = {
    "summary": "Remove one track of a separated song",
    "parameters": [_HASH, _TRACK, _MODEL, _BITS, _BITRATE],
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
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Submission"}},
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/Upload"}}}},
        "responses": {"200": _json("Accepted", "Enqueued, or already known"),
                      **_errors(400, 401, 403, 408, 413, 415, 422, 429, 503)},
    }},
    "/apiv1/queue": {"get": {
        "summary": "Hashes waiting for a worker, oldest first (with API_KEYS: the caller's own), "
                   "and how many jobs wait and run",
        "parameters": [_query("model", "A model this service offers: its queue; default: the "
                                       "first model's (toWorker)", {"type": "string"})],
        "responses": {"200": _json("Queue", "The queue"), **_errors(400, 401, 503)},
    }},
    "/apiv1/status/{songhash}": {"get": {
        "summary": "Status and progress of a song, its options and every track ready",
        "parameters": [_HASH, _MODEL],
        "responses": {"200": _json("Status", "The job record"), **_errors(400, 401, 404, 503)},
    }},
    "/apiv1/track/{songhash}/{track}": {"get": {
        "summary": "Download one track of any rendition (made on first request)",
        "parameters": [_HASH, _TRACK, _MODEL, _BITS, _BITRATE],
        "responses": {"200": {"description": "The track",
                              "content": {mime: {"schema": {"type": "string", "format": "binary"}}
                                          for mime in sorted({f.mime for f in FORMATS.values()})}},
                      "202": _RENDERING, **_errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/zip/{songhash}": {"get": {
        "summary": "Download every track of a rendition as one zip (<stem>.<ext> entries)",
        "parameters": [_HASH, _MODEL, _FORMAT, _TWO_STEMS, _BITS, _BITRATE],
        "responses": {"200": {"description": "The zip, streamed", "content": {
                          "application/zip": {"schema": {"type": "string", "format": "binary"}}}},
                      "202": _RENDERING, **_errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/models": {"get": {
        "summary": "The models this service offers: stems, family, quality, speed",
        "responses": {"200": _json("Models", "The models, the default first"),
                      **_errors(401, 503)},
    }},
    "/apiv1/cancel/{songhash}": {"post": {
        "summary": "Cancel a song's separation: queued, it leaves the queue; running, it stops",
        "parameters": [_HASH, _MODEL],
        "responses": {"200": _json("Cancelled", "Cancelled, or stopping at its next segment"),
                      **_errors(400, 401, 403, 404, 409, 429, 503)},
    }},
    "/apiv1/ensemble/{songhash}": {"post": {
        "summary": "Stems of a song made from several models': avg, max_spec, min_spec or pick; "
                   "follow it with ?model=<the answer's model> on status, track and zip",
        "parameters": [_HASH],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/EnsembleSpec"}}}},
        "responses": {"202": _json("Ensemble", "Queued, waiting for its members, or known"),
                      **_errors(400, 401, 403, 404, 429, 503)},
    }},
    "/apiv1/song/{songhash}": {"delete": {
        "summary": "Delete a song: its upload, every stem and rendition of every model, its jobs",
        "parameters": [_HASH],
        "responses": {"200": _json("Deleted", "Everything of the song is gone"),
                      **_errors(400, 401, 403, 404, 429, 503)},
    }},
    "/apiv1/remove/{songhash}/{track}": {"get": _REMOVE_BY_GET, "delete": _REMOVE},
    "/apiv1/mix/{songhash}": {"post": {
        "summary": "Queue a mix of a separated song's stems (gains in dB, mute, solo, start, end "
                   "in seconds, format, bits or bitrate, model); fetch it from Location",
        "parameters": [_HASH],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Mix"}}}},
        "responses": {"200": _json("MixQueued", "Made already: Location names it"),
                      "202": _json("MixQueued", "Being made: Location names it, ask after "
                                                "Retry-After"),
                      **_errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/mix/{songhash}/{op}": {"get": {
        "summary": "A mix posted before: the file once made (by byte range when asked)",
        "parameters": [_HASH, {"name": "op", "in": "path", "required": True,
                               "schema": {"type": "string", "pattern": "^mix-[0-9a-f]{16}$"}},
                       _MODEL],
        "responses": {"200": _FILE, "206": _FILE, "202": _MADE,
                      **_errors(400, 401, 403, 404, 416, 429, 500, 503)},
    }},
    "/apiv1/analysis/{songhash}": {"get": {
        "summary": "Tempo (BPM), key and integrated loudness (LUFS) of the mix and each stem",
        "parameters": [_HASH, _MODEL],
        "responses": {"200": {"description": "The analysis: mix and stems, each {tempo_bpm, "
                                             "key, loudness_lufs, duration_s}"},
                      "202": _MADE, **_errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/peaks/{songhash}": {"get": {
        "summary": "Waveform peaks of each stem and the mix: zoom levels and their files' URLs",
        "parameters": [_HASH, _MODEL],
        "responses": {"200": {"description": "Per stem, [{samples_per_peak, url}]"},
                      "202": _MADE, **_errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/peaks/{songhash}/{name}": {"get": {
        "summary": "One peaks file: audiowaveform's binary .dat, version 1, 8-bit",
        "parameters": [_HASH, {"name": "name", "in": "path", "required": True,
                               "schema": {"type": "string"}}, _MODEL],
        "responses": {"200": _FILE, "206": _FILE, "202": _MADE,
                      **_errors(400, 401, 403, 404, 409, 416, 429, 500, 503)},
    }},
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
    "/metrics": {"get": {
        "summary": "Prometheus metrics: queues, jobs in flight and ended, HTTP requests",
        "responses": {"200": {"description": "Prometheus text format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                      **_errors(401)},
    }},
}

_SCHEMAS = {
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
                  "description": "stem -> the member it is taken from"}}},
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
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"}}},
    "Mix": {"type": "object", "properties": {
        "model": {"type": "string"},
        "gains": {"type": "object", "additionalProperties": {"type": "number", "minimum": -60,
                                                             "maximum": 12},
                  "description": "stem: dB"},
        "mute": {"type": "array", "items": {"type": "string"}},
        "solo": {"type": "array", "items": {"type": "string"}},
        "start": {"type": "number", "minimum": 0}, "end": {"type": "number", "minimum": 0},
        "format": {"type": "string", "enum": list(FORMATS)},
        "bits": {"type": "integer", "enum": [16, 24]},
        "bitrate": {"type": "integer", "enum": list(MP3_BITRATES)},
    }},
    "MixQueued": {"type": "object", "properties": {
        "hash": {"type": "string"}, "model": {"type": "string"},
        "operation": {"type": "string"}, "status": {"type": "string"},
        "url": {"type": "string"}, "params": {"type": "object"},
    }},
    "Error": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string", "description": "What went wrong and how to fix it"},
    }},
}


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Micro Demucs", "version": "1.0.0",
                 "description": "Music source separation: submit a song, download its stems "
                                "in any format."},
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "responses": {"Error": _json("Error", "An error, as JSON")},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
