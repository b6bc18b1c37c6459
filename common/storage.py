"""The object store (MinIO or any S3 server) through the `minio` client.

Uploads live in the songs bucket as `<hash>.<ext>`; in the output bucket, everything of a song
lies under `<hash>/`: lossless stems at `<hash>/<model>/stems/<stem>.flac`, renditions at
`<hash>/<model>/<rendition>/<track>` (docs/jobs.md). Every failure to reach the store is
raised as StorageError.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import BinaryIO, ParamSpec, TypeVar

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import MinioException, S3Error

from common import tracks
from common.settings import Settings

_MISSING = ("NoSuchKey", "NoSuchObject")
P = ParamSpec("P")
T = TypeVar("T")
# Content types of the uploads, by the extension the gateway's probe gives each format.
UPLOAD_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg",
                "aac": "audio/aac", "m4a": "audio/mp4"}


class StorageError(RuntimeError):
    """The object store could not be reached or refused the request."""


class BucketMissing(StorageError):
    """A bucket is gone (a store that lost its data): an outage, not a missing object."""


class NotFound(LookupError):
    """The object does not exist."""


def song_object(song_hash: str, ext: str = "mp3") -> str:
    """The upload of a song in the songs bucket: `<hash>.<ext>`."""
    return f"{song_hash}.{ext}"


def lossless_object(song_hash: str, model: str, stem: str) -> str:
    """A stem as the separation worker stores it: `<hash>/<model>/stems/<stem>.flac`."""
    return f"{song_hash}/{model}/stems/{tracks.lossless_track(stem)}"


def job_prefix(song_hash: str, model: str, rendition: str = "") -> str:
    """Where one job writes: a separation's stems `<hash>/<model>/stems/`, a render job's
    tracks `<hash>/<model>/<rendition>/`."""
    return f"{song_hash}/{model}/{rendition or 'stems'}/"


def rendition_object(song_hash: str, model: str, rendition: str, track: str) -> str:
    """One track of a rendition: `<hash>/<model>/<rendition>/<track>` (track with its ext)."""
    return f"{song_hash}/{model}/{rendition}/{track}"



WORKER_READ_TIMEOUT_S = 60  # a worker waits out a busy store rather than fail a job


def _http_client(timeout_s: float | None) -> urllib3.PoolManager:
    """Few retries, so that an outage becomes an error in seconds, not minutes. With
    `timeout_s` (the gateway's STORE_TIMEOUT_S) a store that stops answering costs one timeout:
    its reads are not retried; without, the workers' 3 s to connect and 60 s per read."""
    timeout = (urllib3.Timeout(connect=timeout_s, read=timeout_s) if timeout_s
               else urllib3.Timeout(connect=3, read=WORKER_READ_TIMEOUT_S))
    return urllib3.PoolManager(
        timeout=timeout,
        retries=urllib3.Retry(total=2, read=0 if timeout_s else None, backoff_factor=0.2,
                              status_forcelist=(500, 502, 503, 504)),
        maxsize=16,
    )


class Storage:
    """Songs and stems in two buckets."""

    def __init__(self, settings: Settings, timeout_s: float | None = None):
        self.songs_bucket = settings.songs_bucket
        self.output_bucket = settings.output_bucket
        self._http = _http_client(timeout_s)
        self.client = Minio(
            settings.minio_host,
            access_key=settings.minio_access_key,
            secret_key=settings.minio_secret_key,
            secure=settings.minio_secure,
            region=settings.minio_region,
            http_client=self._http,
        )

    def close(self) -> None:
        """Close the pooled connections to the store."""
        self._http.clear()

    def _call(self, action: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`action(*args, **kwargs)`, its failures as the store's exceptions."""
        try:
            return action(*args, **kwargs)
        except S3Error as error:
            if error.code in _MISSING:
                raise NotFound(error.message) from error
            if error.code == "NoSuchBucket":
                self._recreate_buckets()
                raise BucketMissing(f"object store has lost bucket {error.bucket_name!r}; "
                                    "it was created again") from error
            raise StorageError(f"object store refused the request: {error.code}") from error
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            raise StorageError(f"object store unreachable: {error}") from error

    def ensure_buckets(self) -> None:
        """Create both buckets if they do not exist yet."""
        for bucket in (self.songs_bucket, self.output_bucket):
            if not self._call(self.client.bucket_exists, bucket):
                try:
                    self._call(self.client.make_bucket, bucket)
                except StorageError as error:
                    if "BucketAlreadyOwnedByYou" not in str(error):
                        raise

    def _recreate_buckets(self) -> None:
        """Best effort, so that the retry of whatever found a bucket missing can succeed."""
        try:
            self.ensure_buckets()
        except StorageError:
            pass  # the store is still down; the next failure tries again

    def _exists(self, bucket: str, name: str) -> bool:
        try:
            self._call(self.client.stat_object, bucket, name)
        except NotFound:
            return False
        return True

    def _get(self, bucket: str, name: str) -> bytes:
        response = self._call(self.client.get_object, bucket, name)
        try:
            return self._call(response.read)
        finally:
            response.close()
            response.release_conn()

    # -- songs ------------------------------------------------------------------------
    def song_exists(self, song_hash: str, ext: str = "mp3") -> bool:
        """Whether the song's upload `<hash>.<ext>` is in the songs bucket."""
        return self._exists(self.songs_bucket, song_object(song_hash, ext))

    def remove_song(self, song_hash: str, ext: str = "mp3") -> None:
        """Remove the song's upload `<hash>.<ext>` (an absent one is no error)."""
        self._call(self.client.remove_object, self.songs_bucket, song_object(song_hash, ext))

    def download_input(self, name: str, path: str) -> None:
        """Download `name` of the songs bucket into the file `path`, without holding it."""
        self._call(self.client.fget_object, self.songs_bucket, name, path)

    # -- lossless stems ---------------------------------------------------------------
    def lossless_upload(self, song_hash: str, model: str, stem: str) -> PartUpload:
        """A multipart upload of one lossless stem, visible only once completed."""
        return PartUpload(self, self.output_bucket, lossless_object(song_hash, model, stem),
                          "audio/flac")

    def put_lossless(self, song_hash: str, model: str, stem: str, data: bytes) -> None:
        """Store a whole lossless stem at once (the worker streams them: lossless_upload)."""
        self._call(self.client.put_object, self.output_bucket,
                   lossless_object(song_hash, model, stem), io.BytesIO(data), len(data),
                   content_type="audio/flac")

    def abort_uploads(self, prefix: str) -> int:
        """Abort every multipart upload still open under `prefix` of the output bucket (those
        of an attempt that died mid-upload); returns how many."""
        aborted = 0
        while True:  # aborted uploads leave the listing, so each round starts from the top
            listing = self._call(self.client._list_multipart_uploads, self.output_bucket,
                                 prefix=prefix)
            now = 0
            for upload in listing.uploads:
                if upload.object_name and upload.upload_id:  # a listing's entries have both
                    now += self._call(self._abort_open_upload, upload.object_name,
                                      upload.upload_id)
            aborted += now
            if not listing.is_truncated or not now:  # a round that ended none: no progress
                return aborted

    def _abort_open_upload(self, name: str, upload_id: str) -> int:
        """1 when the upload was aborted, 0 when it had ended meanwhile."""
        try:
            self.client._abort_multipart_upload(self.output_bucket, name, upload_id)
        except S3Error as error:
            if error.code == "NoSuchUpload":
                return 0
            raise
        return 1

    def remove_lossless(self, song_hash: str, model: str, stem: str) -> None:
        """Remove one lossless stem (an absent one is no error)."""
        self._call(self.client.remove_object, self.output_bucket,
                   lossless_object(song_hash, model, stem))

    def download_lossless(self, song_hash: str, model: str, stem: str, path: str) -> None:
        """Stream a lossless stem into the file `path`, without holding it."""
        self._call(self.client.fget_object, self.output_bucket,
                   lossless_object(song_hash, model, stem), path)

    # -- renditions and other objects of the output bucket -------------------------------
    def put_output_file(self, name: str, path: str, content_type: str) -> None:
        """Store the file `path` as `name`, streamed (in parts when large), never whole."""
        # One part in flight: minio's default of three in parallel holds four 5 MiB parts of a
        # long track at once where a short one never reaches three, so memory grew with length.
        self._call(self.client.fput_object, self.output_bucket, name, path,
                   content_type=content_type, num_parallel_uploads=1)

    def get_output(self, name: str) -> bytes:
        """The object `name` of the output bucket, whole."""
        return self._get(self.output_bucket, name)

    # -- every object of a song -------------------------------------------------------------
    def remove_output(self, names: list[str]) -> None:
        """Remove objects of the output bucket (those absent already are no error)."""
        for name in names:
            self._call(self.client.remove_object, self.output_bucket, name)

    def remove_song_everything(self, song_hash: str) -> int:
        """Remove every object of a song: its uploads and all under `<hash>/`; returns how many."""
        removed = 0
        for bucket, prefix, recursive in ((self.output_bucket, f"{song_hash}/", True),
                                          (self.songs_bucket, f"{song_hash}.", False)):
            names = self._call(self._names, bucket, prefix, recursive)
            for name in names:
                self._call(self.client.remove_object, bucket, name)
            removed += len(names)
        return removed

    def _names(self, bucket: str, prefix: str, recursive: bool) -> list[str]:
        """The names of a bucket's objects under `prefix`, listed to the end."""
        return [obj.object_name for obj in self.client.list_objects(
            bucket, prefix=prefix, recursive=recursive) if obj.object_name]

    # -- streaming, for the gateway ---------------------------------------------------
    def put_song_stream(self, song_hash: str, ext: str, stream: BinaryIO, length: int) -> None:
        """Store an upload read from `stream` (`length` bytes), in parts, never whole."""
        self._call(self.client.put_object, self.songs_bucket, song_object(song_hash, ext),
                   stream, length, content_type=UPLOAD_TYPES.get(ext, "application/octet-stream"))

    def output_size(self, name: str) -> int:
        """Size of an object of the output bucket; NotFound if it is not there."""
        return self._call(self.client.stat_object, self.output_bucket, name).size or 0

    def names_under(self, prefix: str) -> list[str]:
        """Names, relative to `prefix`, of the output bucket's objects under it."""
        names = self._call(self._names, self.output_bucket, prefix, True)
        return [name.removeprefix(prefix) for name in names]

    def stream_output(self, name: str, offset: int = 0,
                      length: int = 0) -> tuple[int, Iterator[bytes]]:
        """Size and chunks of an object of the output bucket (`length` bytes from `offset`;
        0: to its end), for streaming it to a client."""
        response = self._call(self.client.get_object, self.output_bucket, name, offset, length)
        size = int(response.headers.get("Content-Length", 0))

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.stream(64 * 1024)
            finally:
                response.close()
                response.release_conn()

        return size, chunks()


class PartUpload:
    """One object written in numbered parts (any order, each but the last >= PART_SIZE).

    Nothing is visible until `complete`; `abort` drops the parts. minio-py has no public
    multipart calls, so this uses its internal ones (minio is pinned in the requirements).
    """

    PART_SIZE = 5 * 2**20  # the S3 minimum for every part but the last

    def __init__(self, storage: Storage, bucket: str, name: str, content_type: str):
        self.storage, self.bucket, self.name = storage, bucket, name
        self.headers = {"Content-Type": content_type}
        self.upload_id: str | None = None
        self.parts: dict[int, str] = {}  # part number -> etag

    def put_part(self, number: int, data: bytes) -> None:
        """Send part `number` (from 1); the first one starts the multipart upload."""
        client = self.storage.client
        if self.upload_id is None:
            self.upload_id = self.storage._call(client._create_multipart_upload, self.bucket,
                                                self.name, dict(self.headers))
        self.parts[number] = self.storage._call(client._upload_part, self.bucket, self.name,
                                                data, None, self.upload_id, number)

    def put_whole(self, data: bytes) -> None:
        """Store the object in one PUT (no part sent before)."""
        self.storage._call(self.storage.client.put_object, self.bucket, self.name,
                           io.BytesIO(data), len(data), content_type=self.headers["Content-Type"])

    def complete(self) -> None:
        """Store the object made of the parts sent."""
        if self.upload_id is None:
            raise RuntimeError(f"{self.name}: completed before any part was sent")
        parts = [Part(n, etag) for n, etag in sorted(self.parts.items())]
        self.storage._call(self.storage.client._complete_multipart_upload, self.bucket,
                           self.name, self.upload_id, parts)
        self.upload_id = None

    def abort(self) -> None:
        """Drop the parts sent; nothing of this upload stays in the store."""
        if self.upload_id is not None:
            self.storage._call(self.storage.client._abort_multipart_upload, self.bucket,
                               self.name, self.upload_id)
            self.upload_id = None
