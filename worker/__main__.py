"""`python -m worker` or `micro-demucs-worker`: run one worker process until SIGTERM.

The console script's main module imports this one, hence `run` imports the worker lazily.
"""

import sys


def run() -> int:
    """Run the worker (the `micro-demucs-worker` command)."""
    from worker.separation.main import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
