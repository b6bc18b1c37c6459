"""The web page at `/`: rest/static/index.html and its modules, same-origin only.

The page is a client of the API like any other: it calls the routes under /apiv1/ and nothing
else, and loads nothing from another origin, which its Content-Security-Policy enforces.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from rest import access

page = Blueprint("page", __name__)
access.declare(open_endpoints={"page.index"})  # the page asks for a key itself when needed

# Scripts, styles, audio fetches and downloads all come from this origin; nothing inline.
# Playback fetches the stems' bytes and decodes them itself (Web Audio): no media element, so
# no media source either.
CONTENT_SECURITY_POLICY = ("default-src 'self'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'; object-src 'none'; media-src 'none'")


@page.get("/")
def index() -> Response:
    """The page itself; its modules and stylesheet are served from /static/."""
    response = current_app.send_static_file("index.html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
