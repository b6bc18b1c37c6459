"""Development launcher kept under the original name; production runs gunicorn."""

import os

from rest.app import create_app

if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
