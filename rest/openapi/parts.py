"""Pieces the OpenAPI groups share: path and query parameters, error responses."""

from __future__ import annotations

from common.tracks import FORMATS, MP3_BITRATES

ERROR = {"$ref": "#/components/responses/Error"}
ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string", "description": "What went wrong and how to fix it"},
}}
HASH = {"name": "songhash", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}


def query(name: str, description: str, schema: dict) -> dict:
    """An optional query parameter."""
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def json_response(schema_name: str, description: str) -> dict:
    """A JSON response whose body is the named component schema."""
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}


def json_body(schema_name: str) -> dict:
    """A required JSON request body that is the named component schema."""
    return {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}


def errors(*codes: int) -> dict:
    """The JSON error response under each of these status codes."""
    return {str(code): ERROR for code in codes}


MODEL = query("model", "A model this service offers (GET /apiv1/models); default: the first",
              {"type": "string"})
BITS = query("bits", "wav and flac: bits per sample (16 default, or 24)",
             {"type": "integer", "enum": [16, 24]})
BITRATE = query("bitrate", "mp3: kbps (default MP3_BITRATE, 320)",
                {"type": "integer", "enum": list(MP3_BITRATES)})
FORMAT = query("format", "mp3 (default), wav or flac", {"type": "string",
                                                        "enum": list(FORMATS)})
