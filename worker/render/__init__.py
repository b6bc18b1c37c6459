"""Render jobs: lossless stems in, one rendition (mp3, wav or flac tracks) out; no model."""
