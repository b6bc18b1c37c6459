"""Development launcher kept under the original name; production runs gunicorn.

Run it where the project is installed (`make` set-up): `python rest/rest-server.py`.
"""

import os

from rest.app import create_app  # the project is installed (`pip install -e .`)

if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
