"""What the REST gateway and the worker share: settings, Redis keys and jobs, storage, logs."""
