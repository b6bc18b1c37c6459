"""Zips written while they are sent: readable by zipfile, entries stored, never held whole."""

from __future__ import annotations

import io
import zipfile

from rest.zipstream import stream_zip


def _entries(sizes: dict[str, int], chunk: int = 65536):
    def opener(size: int, seed: int):
        def chunks():
            data = bytes((seed + i) % 251 for i in range(min(size, chunk)))
            left = size
            while left:
                yield data[:min(left, chunk)]
                left -= min(left, chunk)
        return chunks
    return [(name, size, opener(size, n)) for n, (name, size) in enumerate(sizes.items())]


def test_the_zip_reads_back_entry_by_entry():
    sizes = {"drums.flac": 300_000, "bass.flac": 1, "other.flac": 0, "vocals.flac": 70_000}
    pieces = list(stream_zip(_entries(sizes)))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.testzip() is None
    assert [info.filename for info in archive.infolist()] == list(sizes)
    for info in archive.infolist():
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.file_size == sizes[info.filename]
        expected = b"".join(next(e for e in _entries(sizes) if e[0] == info.filename)[2]())
        assert archive.read(info) == expected


def test_no_piece_holds_more_than_a_chunk_and_its_headers():
    sizes = {f"stem{n}.wav": 1_000_000 for n in range(4)}
    pieces = list(stream_zip(_entries(sizes)))
    assert sum(map(len, pieces)) > 4_000_000
    assert max(map(len, pieces)) < 65536 + 200


def test_entries_are_opened_only_when_their_turn_comes():
    opened = []

    def entry(name):
        def chunks():
            opened.append(name)
            yield name.encode()
        return name, len(name), chunks

    stream = stream_zip([entry("a.mp3"), entry("b.mp3")])
    next(stream)
    assert opened == ["a.mp3"]
    list(stream)
    assert opened == ["a.mp3", "b.mp3"]
