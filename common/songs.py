"""Deleting a song everywhere, as DELETE /apiv1/song/<hash> and the expiry sweep both do.

Records first: each running job thereby loses its token, and its worker removes whatever it
stores after that; then every object of the song.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from common import keys
from common.jobs import JobStore
from common.storage import Storage, StorageError

log = logging.getLogger(__name__)


class Deleted(NamedTuple):
    """What a deletion removed: job records and objects."""

    jobs: int
    objects: int


def delete_song(jobs: JobStore, storage: Storage, song_hash: str) -> Deleted:
    """Remove every job record and object of a song; (0, 0) if there was nothing of it.

    Raises StorageError when the store fails after the records went; the song is then left
    for the workers' sweep, which removes its objects once the store answers.
    """
    ids = jobs.delete_song(song_hash)
    jobs.redis.delete(keys.ensemble_waiting(song_hash))  # its ensembles' records went above
    try:
        removed = storage.remove_song_everything(song_hash)
    except StorageError:
        jobs.sweep_later(song_hash)
        raise
    jobs.deleted(song_hash)
    return Deleted(len(ids), removed)


def sweep_expired(jobs: JobStore, storage: Storage, ended_before: float) -> list[str]:
    """Delete every song whose newest job ended before `ended_before` (and those left by a
    delete the store failed); returns their hashes."""
    songs = jobs.expired_songs(ended_before)
    for song_hash in songs:
        delete_song(jobs, storage, song_hash)
        log.info("song %s: expired, deleted", song_hash)
    return songs
