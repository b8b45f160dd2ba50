"""The trust store: the sha256 of every pipeline content the user agreed to run.

The store is one JSON file, ``PIPEYARD_HOME/trust.json``::

    {"version": 1, "trusted": {"<sha256>": {"source": "...", "added": "2026-11-23T01:00:00Z"}}}

It is read strictly: anything else (``null``, a list, a digest that is not 64 hexadecimal
digits, an entry that is not a mapping of strings) raises
:class:`~pipeyard.errors.TrustStoreError` naming the file, the entry and the fix, for reads and
edits alike, so a damaged store is never half-used and an edit never keeps its junk. Edits are
atomic (temp file + ``os.replace``) under a file lock.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import constants, errors
from .cache import atomic_write, home_errors

TRUST_FILE_NAME = "trust.json"
#: Trust stores larger than this are refused as damaged (10,000 entries take ~1.5 MB).
MAX_TRUST_FILE_BYTES = 64 * 1024 * 1024

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("source", "added")


@dataclass(frozen=True)
class TrustEntry:
    """One trusted digest, with where it came from and when it was added."""

    sha256: str
    source: str
    added: str


def trust_file() -> Path:
    """Where the trust store lives (``PIPEYARD_HOME/trust.json``)."""
    return constants.pipeyard_home() / TRUST_FILE_NAME


def check_digest(sha256: str) -> str:
    """``sha256`` normalised (stripped, lower case); InvalidPipelineNameError if it is not one."""
    digest = sha256.strip().lower()
    if not _DIGEST.match(digest):
        raise errors.InvalidPipelineNameError(sha256[:100], "a sha256 is 64 hexadecimal digits", "digest")
    return digest


def _damaged(path: Path, problem: str) -> errors.TrustStoreError:
    return errors.TrustStoreError(str(path), problem)


def _parse(path: Path, raw: bytes) -> dict[str, TrustEntry]:
    from ..fileio import parse_json_object

    try:
        data = parse_json_object(raw, path)
    except errors.ConfigFileError as exc:
        raise _damaged(path, f"it is not a JSON object ({exc.reason})") from None
    if not isinstance(data.get("trusted", {}), dict):
        raise _damaged(path, 'it is not a mapping with a "trusted" mapping')
    if data.get("version", 1) != 1:
        raise _damaged(path, f"it has version {str(data.get('version'))[:20]!r}; this pipeyard reads version 1")
    entries = {}
    for digest, entry in data.get("trusted", {}).items():
        if not _DIGEST.match(digest):
            raise _damaged(path, f"entry {digest[:80]!r} is not a sha256 (64 lower-case hexadecimal digits)")
        if not isinstance(entry, dict) or not all(isinstance(entry.get(f, ""), str) for f in _FIELDS):
            raise _damaged(path, f"entry {digest} is not a mapping with string 'source' and 'added'")
        entries[digest] = TrustEntry(digest, entry.get("source", ""), entry.get("added", ""))
    return entries


# The last store parsed, by path and exact bytes: a warm load asks the gate once per load, and
# parsing 10,000 entries strictly takes ~100 ms while reading and comparing the bytes takes a
# fraction of a millisecond. Comparing bytes, not mtimes, means no edit can be missed (file
# times only move once per clock tick, so an in-place edit of the same size may keep them).
_PARSED: dict[str, tuple[bytes, dict[str, TrustEntry]]] = {}


def _entries() -> dict[str, TrustEntry]:
    """The parsed store, shared: callers must not change it (see :func:`read_entries`)."""
    path = trust_file()
    with home_errors(path, "read the trust store"):
        try:
            if path.stat().st_size > MAX_TRUST_FILE_BYTES:
                raise _damaged(path, f"it is larger than {MAX_TRUST_FILE_BYTES} bytes")
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
    cached = _PARSED.get(str(path))
    if cached is not None and cached[0] == raw:
        return cached[1]
    entries = _parse(path, raw)
    _PARSED.clear()
    _PARSED[str(path)] = (raw, entries)
    return entries


def read_entries() -> dict[str, TrustEntry]:
    """Every trusted digest -> its entry (a copy); empty when there is no store yet."""
    return dict(_entries())


def _write(entries: dict[str, TrustEntry]) -> None:
    trusted = {d: {"source": e.source, "added": e.added} for d, e in sorted(entries.items())}
    payload = {"version": 1, "trusted": trusted}
    atomic_write(trust_file(), json.dumps(payload, indent=1).encode(), what="update the trust store")


@contextmanager
def _edited() -> Iterator[dict[str, TrustEntry]]:
    """The entries, under the store's lock; written back when the block ends without error."""
    from filelock import FileLock

    path = trust_file()
    with home_errors(path.parent, "lock the trust store"):
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock", timeout=30)
        lock.acquire()
    try:
        entries = read_entries()
        before = dict(entries)
        yield entries
        if entries != before:
            _write(entries)
    finally:
        lock.release()


def add_trusted(sha256: str, source: str = "") -> TrustEntry:
    """Trust the content with this digest from now on; returns the entry."""
    digest = check_digest(sha256)
    added = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = TrustEntry(digest, source, added)
    with _edited() as entries:
        entries[digest] = entry
    return entry


def remove_trusted(sha256: str) -> bool:
    """Stop trusting a digest; True when it was trusted."""
    digest = check_digest(sha256)
    with _edited() as entries:
        return entries.pop(digest, None) is not None


def list_trusted() -> list[TrustEntry]:
    """Every trusted entry, sorted by digest."""
    return [entry for _, entry in sorted(read_entries().items())]


def is_trusted(sha256: str) -> bool:
    """Whether this digest is in the trust store."""
    return sha256 in _entries()
