"""Render operations: lossless stems in, renditions (mp3, wav or flac tracks) out; no model.

May import common/ and worker.runtime; never torch or worker.separation, so the render image
carries neither.
"""
