"""Deployment checks beyond the tests: the cpu overlay on a local kind cluster."""
