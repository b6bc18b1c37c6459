"""OpenAPI of the studio: mixes, waveform peaks and analysis, made by a render worker on
request, and playback of the lossless stems by byte range (their seek index, their bytes)."""

from __future__ import annotations

from common.tracks import FORMATS, MP3_BITRATES
from rest.openapi.parts import HASH, MODEL, errors, json_body, json_response

_MADE = {"description": "Being made from the song's stems; ask again after Retry-After seconds "
                        "at Location",
         "headers": {"Retry-After": {"schema": {"type": "integer"}},
                     "Location": {"schema": {"type": "string"}}}}
_FILE = {"description": "The file, whole (200) or the byte range asked for (206)",
         "content": {"application/octet-stream": {"schema": {"type": "string",
                                                             "format": "binary"}}}}

_FLAC = {"description": "The stem, whole (200) or the byte range asked for (206)",
         "content": {"audio/flac": {"schema": {"type": "string", "format": "binary"}}}}

PATHS = {
    "/apiv1/mix/{songhash}": {"post": {
        "summary": "Queue a mix of a separated song's stems (gains in dB, mute, solo, start, end "
                   "in seconds, format, bits or bitrate, model); fetch it from Location",
        "parameters": [HASH],
        "requestBody": json_body("Mix"),
        "responses": {"200": json_response("MixQueued", "Made already: Location names it"),
                      "202": json_response("MixQueued", "Being made: Location names it, ask "
                                                        "after Retry-After"),
                      **errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/mix/{songhash}/{op}": {"get": {
        "summary": "A mix posted before: the file once made (by byte range when asked)",
        "parameters": [HASH, {"name": "op", "in": "path", "required": True,
                              "schema": {"type": "string", "pattern": "^mix-[0-9a-f]{16}$"}},
                       MODEL],
        "responses": {"200": _FILE, "206": _FILE, "202": _MADE,
                      **errors(400, 401, 403, 404, 416, 429, 500, 503)},
    }},
    "/apiv1/analysis/{songhash}": {"get": {
        "summary": "Tempo (BPM), key and integrated loudness (LUFS) of the mix and each stem",
        "parameters": [HASH, MODEL],
        "responses": {"200": {"description": "The analysis: mix and stems, each {tempo_bpm, "
                                             "key, loudness_lufs, duration_s}"},
                      "202": _MADE, **errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/peaks/{songhash}": {"get": {
        "summary": "Waveform peaks of each stem and the mix: zoom levels and their files' URLs",
        "parameters": [HASH, MODEL],
        "responses": {"200": {"description": "Per stem, [{samples_per_peak, url}]"},
                      "202": _MADE, **errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/peaks/{songhash}/{name}": {"get": {
        "summary": "One peaks file: audiowaveform's binary .dat, version 1, 8-bit",
        "parameters": [HASH, {"name": "name", "in": "path", "required": True,
                              "schema": {"type": "string"}}, MODEL],
        "responses": {"200": _FILE, "206": _FILE, "202": _MADE,
                      **errors(400, 401, 403, 404, 409, 416, 429, 500, 503)},
    }},
    "/apiv1/playback/{songhash}": {"get": {
        "summary": "Each stem's seek index, to play its lossless FLAC by byte range: format, "
                   "length, header bytes and a frame every 1.5 s, and the stem's URL",
        "parameters": [HASH, MODEL],
        "responses": {"200": json_response("PlaybackIndex", "The index of every stem"),
                      "202": _MADE, **errors(400, 401, 403, 404, 409, 429, 500, 503)},
    }},
    "/apiv1/lossless/{songhash}/{stem}.flac": {"get": {
        "summary": "A stem's lossless FLAC (24-bit, stored divided by the index's gain), whole "
                   "or by byte range: the header, then whole frames from an index point",
        "parameters": [HASH, {"name": "stem", "in": "path", "required": True,
                              "schema": {"type": "string"}}, MODEL],
        "responses": {"200": _FLAC, "206": _FLAC, **errors(400, 401, 403, 404, 416, 503)},
    }},
}

SCHEMAS = {
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
    "PlaybackIndex": {"type": "object", "properties": {
        "hash": {"type": "string"}, "model": {"type": "string"},
        "format": {"type": "string", "enum": ["flac"]},
        "gain": {"type": "number", "description": "Play each stem at this gain: it is stored "
                                                  "divided by it, for headroom"},
        "stems": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "sample_rate": {"type": "integer"}, "channels": {"type": "integer"},
            "bits": {"type": "integer"}, "total_samples": {"type": "integer"},
            "header_bytes": {"type": "integer", "description": "fLaC and metadata blocks"},
            "bytes": {"type": "integer", "description": "The whole file's length"},
            "frames": {"type": "array", "description": "[first sample, byte offset] of a "
                                                      "frame every 1.5 s, the first at "
                                                      "header_bytes",
                       "items": {"type": "array", "items": {"type": "integer"}}},
            "url": {"type": "string"}}}},
    }},
}
