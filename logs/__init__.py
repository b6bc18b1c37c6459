"""The `logs` service: prints what both services push onto the Redis list `logging`."""
