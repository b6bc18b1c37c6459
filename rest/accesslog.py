"""gunicorn's access log, with the values of credential-like query parameters (`?api_key=`,
`?token=`...) replaced: the gateway refuses such requests, and the log must not keep the key.
Set as `logger_class` in rest/gunicorn.conf.py."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

# Query parameter names that look like credentials: api_key, apiKey, access-token, auth...
CREDENTIAL_NAME = re.compile(r"key|token|auth|secret|passw", re.IGNORECASE)
REDACTED = "REDACTED"


def redact_query(query: str) -> str:
    """The query string with the value of every credential-like parameter replaced."""
    fields = []
    for field in query.split("&"):
        name, equals, _ = field.partition("=")
        if CREDENTIAL_NAME.search(unquote_plus(name)):
            field = f"{name}{equals or '='}{REDACTED}"
        fields.append(field)
    return "&".join(fields)


def redact_uri(uri: str) -> str:
    """A request target (path?query) with its query redacted."""
    path, mark, query = uri.partition("?")
    return f"{path}{mark}{redact_query(query)}" if mark else uri


class RedactingLogger(Logger):
    """gunicorn's logger, whose access lines show no credential sent in a query string."""

    def atoms(self, resp, req, environ, request_time):
        environ = {**environ,
                   "RAW_URI": redact_uri(environ.get("RAW_URI", "")),
                   "QUERY_STRING": redact_query(environ.get("QUERY_STRING", ""))}
        return super().atoms(resp, req, environ, request_time)
