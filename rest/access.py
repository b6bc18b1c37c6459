"""Who may call what: API keys and their roles, keys refused in the query string, per-client
rate limits, and the owners of each song. One guard, installed once for the whole app.

Every route is guarded unless declared open: a request is a write when its method changes
something (anything but GET, HEAD and OPTIONS) or when its route is declared a write by GET.
With API_KEYS set, writes need a read-write key and are rate limited; reads need a key only
with PROTECT_READS. A route with a `songhash` touches that song: a write (or, with
PROTECT_READS, a read) needs a key that submitted it, or an admin key. Without API_KEYS
(an open deployment) songs have no owners and anyone may do anything the routes allow.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from flask import Flask, Request, current_app, g, request

from rest.accesslog import CREDENTIAL_NAME
from rest.errors import ApiError
from rest.ratelimit import RateLimiter

_READ_METHODS = ("GET", "HEAD", "OPTIONS")
_SONG_HASH = re.compile(r"[0-9a-f]{64}")
_open_endpoints: set[str] = {"static"}
_writes_by_get: set[str] = set()


def declare(open_endpoints: Iterable[str] = (), writes_by_get: Iterable[str] = ()) -> None:
    """Name the routes (endpoints) that need no key, and the GET routes that are writes."""
    _open_endpoints.update(open_endpoints)
    _writes_by_get.update(writes_by_get)


def install(blueprint, open_endpoints: Iterable[str], writes_by_get: Iterable[str]) -> None:
    """`declare` under its former name: the guard itself is the app's (init_app)."""
    declare(open_endpoints, writes_by_get)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the id of a valid key presented (a hash, never the key) and its role,
    and the address that rate limits count when no key is."""

    key_id: str = ""
    role: str = ""  # ro, rw or admin; empty without a key
    address: str = ""

    @property
    def who(self) -> str:
        """The name rate limits count: the key when one is presented, else the address."""
        return f"key-{self.key_id[:16]}" if self.key_id else self.address or "unknown"

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def key_id(api_key: str) -> str:
    """What is recorded of a key (as a song's owner): a hash from which it cannot be read."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _role(api_keys: dict[str, str], presented: str) -> str | None:
    """The key's role; None when it is not a key at all (compared in constant time)."""
    found = None
    for key, role in api_keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = role
    return found


def authorize(request: Request, api_keys: dict[str, str], write: bool,
              protect_reads: bool) -> Caller:
    """Check the caller's key as the route needs it; 400, 401 or 403 saying what to send."""
    if any(CREDENTIAL_NAME.search(name) for name in request.args):
        raise ApiError(400, "API keys are not accepted in the query string; send "
                            "Authorization: Bearer <key>")
    address = request.remote_addr or ""
    presented = _presented_key(request) if api_keys else None
    role = _role(api_keys, presented) if presented else None
    if role is not None:
        if write and role == "ro":
            raise ApiError(403, "this API key is read-only; submitting and removing need a "
                                "read-write key")
        return Caller(key_id(presented or ""), role, address)
    if api_keys and (write or protect_reads):
        challenge = {"WWW-Authenticate": 'Bearer realm="micro-demucs"'}
        if presented is None:
            raise ApiError(401, "this route needs an API key: send Authorization: Bearer <key>",
                           headers=challenge)
        raise ApiError(401, "the API key is not valid", headers=challenge)
    return Caller(address=address)  # an open route, or no key needed (an invalid one ignored)


def check_owner(caller: Caller, song_hash: str, write: bool) -> None:
    """403 unless the caller may touch the song: keys off, an admin, reads left open, a song
    without owners, or a key among its owners."""
    settings = current_app.config["SETTINGS"]
    if (not settings.api_keys or caller.admin or not (write or settings.protect_reads)
            or not _SONG_HASH.fullmatch(song_hash)):  # a bad hash: the route answers 400
        return
    owners = current_app.extensions["jobs"].owners(song_hash)
    if owners and caller.key_id not in owners:
        doing = "change" if write else "read"
        raise ApiError(403, f"song {song_hash} was submitted with another API key: only the "
                            f"keys that submitted it (or an admin key) may {doing} it; "
                            "submitting the song with this key makes it one of them")


def caller() -> Caller:
    """The caller of the request being answered, as the guard identified it."""
    return g.get("caller") or Caller(address=request.remote_addr or "")


def count_write() -> None:
    """Count one more write of this request's caller (a download that starts a rendition)."""
    current_app.extensions["rate_limiter"].take(caller().who)


def _guard() -> None:
    endpoint = request.endpoint
    if endpoint is None:
        return  # no such route: a 404 or 405 follows
    settings = current_app.config["SETTINGS"]
    if endpoint in _writes_by_get:
        allowed = ("DELETE",) if settings.remove_requires_delete else ("GET", "DELETE")
        if request.method not in allowed:  # HEAD must never change anything
            raise ApiError(405, f"use {' or '.join(allowed)} to remove",
                           headers={"Allow": ", ".join(allowed)})
    if endpoint in _open_endpoints:
        return
    write = request.method not in _READ_METHODS or endpoint in _writes_by_get
    g.caller = authorize(request, settings.api_keys, write, settings.protect_reads)
    if write:
        who = g.caller.who
        g.rate_slot = (who, current_app.extensions["rate_limiter"].take(who))
    song_hash = (request.view_args or {}).get("songhash")
    if song_hash is not None:
        check_owner(g.caller, song_hash, write)


def _uncount_refusals(response):
    who, slot = g.pop("rate_slot", (None, None))
    if slot is not None and response.status_code >= 400:
        try:
            current_app.extensions["rate_limiter"].refused(who, slot)
        except redis.RedisError:
            pass  # the slot stays counted as a write: the safe side
    return response


def init_app(app: Flask) -> None:
    """Guard every route of the app, those of blueprints registered later included."""
    app.extensions["rate_limiter"] = RateLimiter(app.extensions["redis"],
                                                 app.config["SETTINGS"].rate_limit_per_min)
    app.before_request(_guard)
    app.after_request(_uncount_refusals)
