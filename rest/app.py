"""The application factory: `gunicorn "rest.app:create_app()"`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from common.jobs import JobStore
from common.logship import setup_logging
from common.redisconn import connect
from common.settings import Settings
from common.storage import Storage
from rest import access
from rest.deadline import BodyDeadline
from rest.downloads import downloads
from rest.ensemble import ensemble
from rest.errors import register_error_handlers
from rest.health import health
from rest.manage import manage
from rest.metrics import init_metrics
from rest.page import page
from rest.playback import playback
from rest.songs import songs
from rest.studio import studio
from rest.upload import UploadRequest

# JSON overhead and line breaks of wrapped base64 on top of the 4/3 growth of base64 itself.
_BODY_SLACK = 1.05


class _InOrderJson(DefaultJSONProvider):
    sort_keys = False  # fields in the order the views write them


def create_app(settings: Settings | None = None) -> Flask:
    """The gateway: routes, error handlers, metrics, and clients of Redis and the store (from
    the environment unless `settings` are given; there the secrets must be set)."""
    settings = settings or Settings.from_env().require_secrets()
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config["SETTINGS"] = settings
    # Enforced while the body is read, so an oversized upload is refused before parsing.
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_bytes * 4 / 3 * _BODY_SLACK) + 4096
    app.json = _InOrderJson(app)
    # Flask's documented way to add WSGI middleware, which mypy takes for replacing a method.
    app.wsgi_app = _middleware(app, settings)  # type: ignore[method-assign]
    client = connect(settings, socket_timeout=3)
    app.extensions["redis"] = client
    app.extensions["jobs"] = JobStore(client, settings.default_model,
                                      max_render_queue=settings.max_queue_length,
                                      max_renditions=settings.max_renditions_per_song)
    # Short timeouts: a store that stops answering is a 503 in seconds, not a hung request.
    app.extensions["storage"] = Storage(settings, timeout_s=settings.store_timeout_s)
    app.extensions["upload_slots"] = threading.BoundedSemaphore(settings.max_concurrent_uploads)
    setup_logging(settings, "rest", client)
    register_error_handlers(app)
    access.init_app(app)  # after the OPTIONS answer, which needs no key
    init_metrics(app)
    for blueprint in (songs, health, page, downloads, manage, studio, playback, ensemble):
        app.register_blueprint(blueprint)
    return app


def _middleware(app: Flask, settings: Settings) -> Callable[..., Iterable[bytes]]:
    """The app behind the body read deadline, and behind PROXY_HOPS trusted proxies."""
    wrapped: Callable[..., Iterable[bytes]] = BodyDeadline(app.wsgi_app, settings.body_timeout_s)
    if settings.proxy_hops:
        wrapped = ProxyFix(wrapped, x_for=settings.proxy_hops)
    return wrapped


def close_app(app: Flask) -> None:
    """Close the app's connections to Redis and the object store (gunicorn's exit does it too)."""
    app.extensions["storage"].close()
    app.extensions["redis"].close()
