"""`python -m client`, the same as the `micro-demucs` command."""

import sys

from client.cli import main

sys.exit(main())
