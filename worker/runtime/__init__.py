"""The worker runtime, whatever a worker's jobs: the claim loop and its outcomes, heartbeat,
reaper, callbacks owed (outbox), retries, metrics and the liveness probe.

May import common/ and the standard library; never torch, worker.separation or worker.render.
"""
