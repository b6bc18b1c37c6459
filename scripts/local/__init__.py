"""The local stack and what runs on it: start and stop it, the demo, sample songs and the
sample client."""
