"""Step 4: the one trust decision, taken before any line of a pipeline file runs, and the store.

Code runs only when one of these holds, checked in this order:

=====================  ===================================================================
bundled                it ships with the installed pipeyard (``community/``), or a fetched
                       copy has the sha256 of a bundled registry entry
explicit local         the caller named the local file or folder (``custom_pipeline=path``)
installed              an installed distribution registers it as an entry point
trust store            its digest was added with :func:`pipeyard.trust.add`
trust_remote_code      the caller passed ``trust_remote_code=True``
=====================  ===================================================================

Everything else (a Hub repo, a community file at another revision, a pipeline module inside a
model repo) raises :class:`~pipeyard.errors.UntrustedCodeError`. With
``PIPEYARD_DISABLE_REMOTE_CODE=1`` only bundled code runs, and a remote source that cannot be
bundled is refused by :func:`refuse_before_fetch` before it is downloaded. There is no path
around the gate: every source goes through :func:`require_trust` (diffusers #13691 and
CVE-2026-44513 were sources that skipped it).

The trust store is ``PIPEYARD_HOME/trust.json``::

    {"version": 1, "trusted": {"<sha256>": {"source": "...", "added": "2026-11-23T01:00:00Z"}}}
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

from .. import constants, errors
from ..fileio import write_bytes_atomic
from .resolve import Source, SourceKind

TRUST_FILE_NAME = "trust.json"


@dataclass(frozen=True)
class TrustEntry:
    """One trusted digest, with where it came from and when it was added."""

    sha256: str
    source: str
    added: str


def trust_file() -> Path:
    """Where the trust store lives (``PIPEYARD_HOME/trust.json``)."""
    return constants.pipeyard_home() / TRUST_FILE_NAME


def _read() -> dict[str, dict[str, str]]:
    try:
        data = json.loads(trust_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        raise errors.CustomPipelineError(
            f"the trust store {trust_file()} is not valid JSON; fix or delete it"
        ) from None
    return dict(data.get("trusted", {}))


def _write(entries: dict[str, dict[str, str]]) -> None:
    payload = {"version": 1, "trusted": dict(sorted(entries.items()))}
    write_bytes_atomic(trust_file(), json.dumps(payload, indent=1).encode())


def _locked():
    from filelock import FileLock

    path = trust_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=30)


def _check_digest(sha256: str) -> str:
    digest = sha256.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise errors.InvalidPipelineNameError(sha256, "a sha256 is 64 hexadecimal digits", "digest")
    return digest


def add_trusted(sha256: str, source: str = "") -> TrustEntry:
    """Trust the content with this digest from now on; returns the entry."""
    digest = _check_digest(sha256)
    added = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with _locked():
        entries = _read()
        entries[digest] = {"source": source, "added": added}
        _write(entries)
    return TrustEntry(digest, source, added)


def remove_trusted(sha256: str) -> bool:
    """Stop trusting a digest; True when it was trusted."""
    digest = _check_digest(sha256)
    with _locked():
        entries = _read()
        found = entries.pop(digest, None) is not None
        if found:
            _write(entries)
    return found


def list_trusted() -> list[TrustEntry]:
    """Every trusted digest, sorted by digest."""
    return [TrustEntry(d, e.get("source", ""), e.get("added", "")) for d, e in sorted(_read().items())]


def is_trusted(sha256: str) -> bool:
    return sha256 in _read()


# --------------------------------------------------------------------------- the gate

#: Why ``PIPEYARD_DISABLE_REMOTE_CODE`` refused a source, and what to change.
_DISABLED_REASON = "PIPEYARD_DISABLE_REMOTE_CODE=1 allows bundled pipelines only"
_DISABLED_REMEDY = "unset PIPEYARD_DISABLE_REMOTE_CODE; the other rules then apply"


def _may_be_bundled(source: Source) -> bool:
    """Whether some content of this source would count as bundled (decided by kind alone)."""
    return source.kind in (SourceKind.BUNDLED, SourceKind.GITHUB)


def _is_bundled(source: Source, digest: str) -> bool:
    """Bundled code: shipped in ``community/``, or a GitHub copy equal to a bundled file."""
    if source.kind is SourceKind.GITHUB:
        from .resolve import bundled_digests

        return digest in bundled_digests()
    return source.kind is SourceKind.BUNDLED


def trust_reason(source: Source, digest: str, *, trust_remote_code: bool) -> str | None:
    """Why this code may run, or None when nothing allows it (see the module docstring)."""
    if _is_bundled(source, digest):
        return "bundled with pipeyard"
    if constants.remote_code_disabled():
        return None
    if source.kind in (SourceKind.LOCAL_FILE, SourceKind.LOCAL_FOLDER):
        return "a local path named by the caller"
    if source.kind is SourceKind.ENTRY_POINT:
        return "registered by an installed distribution"
    if is_trusted(digest):
        return "its sha256 is in the trust store"
    if trust_remote_code:
        return "trust_remote_code=True"
    return None


def _refusal(
    source: Source, commit: str | None, digest: str | None, path: str | None
) -> errors.UntrustedCodeError:
    """The one refusal, after fetch (with digest and path) or before it (without)."""
    if constants.remote_code_disabled():
        return errors.UntrustedCodeError(
            source.describe(), commit, digest, path, _DISABLED_REASON, _DISABLED_REMEDY
        )
    why = "it is neither bundled, nor a local path you named, nor in your trust store"
    return errors.UntrustedCodeError(source.describe(), commit, digest, path, why)


def require_trust(
    source: Source, digest: str, *, commit: str | None, path: str, trust_remote_code: bool
) -> str:
    """Return why the code may run, or raise :class:`~pipeyard.errors.UntrustedCodeError`."""
    reason = trust_reason(source, digest, trust_remote_code=trust_remote_code)
    if reason is not None:
        return reason
    raise _refusal(source, commit, digest, path)


def refuse_before_fetch(source: Source) -> None:
    """Raise :class:`~pipeyard.errors.UntrustedCodeError` now when fetching could not change it.

    With ``PIPEYARD_DISABLE_REMOTE_CODE=1``, a remote source that cannot be bundled (a Hub
    repo, a pipeline module of a model repo) is refused whatever its content, so it is refused
    before any request: the error has no commit, sha256 or path. A community file at a GitHub
    revision is still fetched, since a copy equal to a bundled file is bundled code; local
    sources cost no request and are refused by :func:`require_trust` with their digest.

    Example:
        >>> refuse_before_fetch(Source(SourceKind.HUB, "a/b", "pipeline.py", "main"))  # doctest: +SKIP
        Traceback (most recent call last):
        pipeyard.errors.UntrustedCodeError: refusing to run the code of Hub repo 'a/b' at 'main' (...)
    """
    if constants.remote_code_disabled() and source.kind.is_remote and not _may_be_bundled(source):
        raise _refusal(source, None, None, None)
