"""The application factory: `gunicorn "rest.app:create_app()"`."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from common.jobs import JobStore
from common.logship import setup_logging
from common.redisconn import connect
from common.settings import Settings
from common.storage import Storage
from rest.deadline import BodyDeadline
from rest.downloads import downloads
from rest.errors import register_error_handlers
from rest.manage import manage
from rest.metrics import init_metrics
from rest.page import page
from rest.routes import api
from rest.upload import UploadRequest

# JSON overhead and line breaks of wrapped base64 on top of the 4/3 growth of base64 itself.
_BODY_SLACK = 1.05


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env().require_secrets()
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config["SETTINGS"] = settings
    app.config["MAX_UPLOAD_MB"] = settings.max_upload_bytes // (1024 * 1024)
    # Enforced while the body is read, so an oversized upload is refused before parsing.
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_bytes * 4 / 3 * _BODY_SLACK) + 4096
    app.json.sort_keys = False
    app.wsgi_app = BodyDeadline(app.wsgi_app, settings.body_timeout_s)
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)
    client = connect(settings, socket_timeout=3)
    app.extensions["redis"] = client
    app.extensions["jobs"] = JobStore(client, settings.default_model)
    app.extensions["storage"] = Storage(settings)
    setup_logging(settings, "rest", client)
    register_error_handlers(app)
    init_metrics(app)
    for blueprint in (api, page, downloads, manage):
        app.register_blueprint(blueprint)
    return app


def close_app(app: Flask) -> None:
    """Close the app's connections to Redis and the object store (gunicorn's exit does it too)."""
    app.extensions["storage"].close()
    app.extensions["redis"].close()
