"""Soaks and hostile input: workers killed under load, clients that misbehave."""
