"""One round of hostile uploads against a running gateway, each of which must be refused:
the attempts of docs/guarantees.md's table (hidden audio, nested JSON, huge callback data,
stray base64 bits, a two-frame file, port 0, credentials in the query, HEAD removes, a URL
over gunicorn's limit, NaN in callback data, a form of too many parts, a WAV of a million tiny
chunks, an M4A whose media header is cut short, bodies that trickle). `make chaos` sends it
among its songs.

The gateway must run with MAX_DURATION_S of a minute or less and a short BODY_TIMEOUT_S.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from scripts.local.make_samples import song_mp3

SLOW_BODIES = 8
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _stray_bits(data: bytes) -> str:
    """Base64 of `data` whose last character carries bits past the last byte."""
    text = _b64(data + b"\0" if len(data) % 3 == 0 else data)
    pad = len(text) - len(text.rstrip("="))
    return text[:-pad - 1] + ALPHABET[ALPHABET.index(text[-pad - 1]) + 1] + "=" * pad


def chunked_wav(empty_chunks: int, seconds: float = 2) -> bytes:
    """A playable 8 kHz mono WAV whose audio comes after `empty_chunks` 8-byte chunks."""
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    samples = b"\0\1" * int(8000 * seconds)
    body = (b"WAVE" + b"junk\0\0\0\0" * empty_chunks + b"fmt " + struct.pack("<I", len(fmt))
            + fmt + b"data" + struct.pack("<I", len(samples)) + samples)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def mp4_box(kind: bytes, *children: bytes) -> bytes:
    payload = b"".join(children)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def m4a_with_empty_mdhd() -> bytes:
    """An M4A whose sound track's media header is an empty box, the last bytes of the file."""
    hdlr = mp4_box(b"hdlr", b"\0" * 8 + b"soun" + b"\0" * 12)
    entry = (struct.pack(">I", 36) + b"mp4a" + b"\0" * 16 + struct.pack(">I", 2 << 16)
             + b"\0" * 4 + struct.pack(">I", 44100 << 16))
    stsd = mp4_box(b"stsd", b"\0" * 4 + struct.pack(">I", 1) + entry)
    mdia = mp4_box(b"mdia", hdlr, mp4_box(b"minf", mp4_box(b"stbl", stsd)), mp4_box(b"mdhd"))
    return (mp4_box(b"ftyp", b"M4A \0\0\0\0") + mp4_box(b"mdat", b"\0" * 64)
            + mp4_box(b"moov", mp4_box(b"trak", mdia)))


def _attempts(base_url: str) -> dict[str, tuple[Callable[[], requests.Response], int]]:
    """name -> (send it, the status it must get)."""
    song = song_mp3(2, seed=424242)
    hidden = song + b"TAG" + bytes(125) + song_mp3(70, seed=1, samplerate=8000, channels=1,
                                                   bitrate=8)
    separate = f"{base_url}/apiv1/separate"

    def post(body) -> Callable[[], requests.Response]:
        return lambda: requests.post(separate, json=body, timeout=60)

    def raw(text: str) -> Callable[[], requests.Response]:
        return lambda: requests.post(separate, data=text, timeout=60,
                                     headers={"Content-Type": "application/json"})

    def upload(data: bytes, name: str, **fields: str) -> Callable[[], requests.Response]:
        return lambda: requests.post(separate, files={"file": (name, io.BytesIO(data))},
                                     data=fields, timeout=60)

    return {
        "audio hidden behind a TAG": (post({"mp3": _b64(hidden)}), 422),
        "a two-frame mp3": (post({"mp3": _b64(song_mp3(0.05))}), 422),
        "nested JSON": (raw("[" * 100_000 + "]" * 100_000), 400),
        "nested callback.data": (raw('{"mp3": "' + _b64(song) + '", "callback": {"url": '
                                     '"http://x.invalid/", "data": ' + "[" * 50 + "]" * 50
                                     + "}}"), 400),
        "100 KiB of callback.data": (post({"mp3": _b64(song), "callback": {
            "url": "http://x.invalid/", "data": "x" * 100_000}}), 413),
        "stray base64 bits": (post({"mp3": _stray_bits(song)}), 400),
        "callback port 0": (post({"mp3": _b64(song), "callback": {
            "url": "http://x.invalid:0/"}}), 400),
        "a key in the query": (lambda: requests.post(f"{separate}?API_KEY=k", timeout=60,
                                                     json={"mp3": _b64(song)}), 400),
        "HEAD on remove": (lambda: requests.head(
            f"{base_url}/apiv1/remove/{'0' * 64}/bass.mp3", timeout=60), 405),
        "a URL over the limit": (lambda: requests.get(
            f"{base_url}/apiv1/status/{'a' * 9000}", timeout=60), 414),
        "NaN in callback.data": (raw('{"mp3": "' + _b64(song) + '", "callback": {"url": '
                                     '"http://x.invalid/", "data": NaN}}'), 400),
        "1,200 form parts": (upload(song, "song.mp3",
                                    **{f"field{n}": "x" for n in range(1200)}), 413),
        "a WAV of 1.5 million chunks": (upload(chunked_wav(1_500_000), "chunks.wav"), 400),
        "an M4A whose mdhd is empty": (upload(m4a_with_empty_mdhd(), "short.m4a"), 400),
    }


def _slow_body(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=120)
    sock.sendall(b"POST /apiv1/separate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                 b"\r\nContent-Length: 100000\r\n\r\n{\"mp3\": \"AA")
    return sock


def _answer(sock: socket.socket) -> int:
    with sock:
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status


def hostile_round(base_url: str) -> tuple[int, list[str]]:
    """Send every attempt; (how many were sent, what was not refused as it must be)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    slow = [_slow_body(host, int(port)) for _ in range(SLOW_BODIES)]
    wrong = []
    attempts = _attempts(base_url)
    for name, (send, status) in attempts.items():
        got = send()
        is_json = got.headers.get("Content-Type") == "application/json" or name.startswith("HEAD")
        if got.status_code != status or not is_json:
            wrong.append(f"{name}: {got.status_code} {got.text[:200]}")
    if requests.get(f"{base_url}/healthz", timeout=5).status_code != 200:
        wrong.append("/healthz did not answer while bodies trickled")
    with ThreadPoolExecutor(SLOW_BODIES) as pool:
        for status in pool.map(_answer, slow):
            if status != 408:
                wrong.append(f"a trickling body: {status}")
    return len(attempts) + SLOW_BODIES, wrong


if __name__ == "__main__":
    import sys

    sent, failures = hostile_round(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000")
    print(json.dumps({"sent": sent, "not refused": failures}, indent=1))
    sys.exit(1 if failures else 0)
