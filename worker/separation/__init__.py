"""Separation: model families loaded by name, the song decoded as a stream, run through the
model in batches and overlap-added into lossless stems in the store.

May import common/, worker.runtime and torch; never worker.render.
"""
