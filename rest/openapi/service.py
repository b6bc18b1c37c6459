"""OpenAPI of the service itself: health probes, metrics and this document."""

from __future__ import annotations

from rest.openapi.parts import errors, json_response

PATHS = {
    "/apiv1/openapi.json": {"get": {
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3 document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }},
    "/healthz": {"get": {
        "summary": "The process is alive",
        "responses": {"200": json_response("Health", "Alive")},
    }},
    "/readyz": {"get": {
        "summary": "Redis and the object store are reachable",
        "responses": {"200": json_response("Health", "Ready"), **errors(503)},
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics: queues, jobs in flight and ended, HTTP requests",
        "responses": {"200": {"description": "Prometheus text format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                      **errors(401)},
    }},
}

SCHEMAS = {
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"}}},
}
