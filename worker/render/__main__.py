"""`python -m worker.render` or `micro-demucs-render`: run one render worker until SIGTERM.

The render processes (spawned) re-import the parent's main module unless it is a package's
`__main__`; started this way they import numpy, soundfile and LAME, not the worker's loop.
"""

import sys


def run() -> int:
    """Run the render worker (the `micro-demucs-render` command)."""
    from worker.render.main import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
