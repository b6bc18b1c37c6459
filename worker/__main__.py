"""`python -m worker` or `micro-demucs-worker`: run one worker process until SIGTERM.

The encoding processes (spawned) re-import the parent's main module unless it is a package's
`__main__`; started this way they import LAME and numpy only, not torch and the model code.
The console script's main module imports this one, hence `run` imports the worker lazily.
"""

import sys


def run() -> int:
    """Run the worker (the `micro-demucs-worker` command)."""
    from worker.main import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
