"""The worker: claims a song, separates it with Demucs, encodes and stores the stems, reports."""
