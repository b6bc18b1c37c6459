"""The REST gateway: validates uploads, stores them, queues them and serves the stems."""
