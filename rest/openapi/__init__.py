"""The OpenAPI 3 description of the gateway, served at /apiv1/openapi.json.

One module per group of routes, each with its PATHS and the SCHEMAS they name: songs
(submission, status, downloads, models, ensembles, removal), studio (mixes, peaks, analysis)
and service (probes, metrics, this document); parts holds the parameters and errors they share.
A new route goes into its group's PATHS; the document lists the groups in that order.
"""

from __future__ import annotations

from rest.openapi import service, songs, studio
from rest.openapi.parts import ERROR_SCHEMA, json_response


def document() -> dict:
    """The whole document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Micro Demucs", "version": "1.0.0",
                 "description": "Music source separation: submit a song, download its stems "
                                "in any format."},
        "paths": {**songs.PATHS, **studio.PATHS, **service.PATHS},
        "components": {
            "schemas": {**songs.SCHEMAS, **service.SCHEMAS, **studio.SCHEMAS,
                        "Error": ERROR_SCHEMA},
            "responses": {"Error": json_response("Error", "An error, as JSON")},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
