"""Running a worker as a process: SIGTERM finishes the job in hand, then exits."""

from __future__ import annotations

import logging
import os
import signal
import threading

from worker.runtime.loop import ClaimLoop

log = logging.getLogger("worker")


def serve(worker: ClaimLoop, grace_s: float) -> None:
    """Run `worker` until SIGTERM or SIGINT: the first stops claiming and lets the job in hand
    finish within `grace_s`, after which it is handed back and the process exits; a second
    signal hands it back at once (a cold stop)."""

    def cold_stop() -> None:
        worker.hand_back_held()
        logging.shutdown()
        os._exit(0)

    def on_signal(signum: int, _frame=None) -> None:
        if worker.stopping.is_set():
            log.warning("signal %d again: handing back now", signum)
            cold_stop()
        log.info("signal %d: finishing the current job within %d s", signum, grace_s)
        worker.stop()
        timer = threading.Timer(grace_s, cold_stop)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.run()
