"""Step 4: the one trust decision, taken before any line of a pipeline file runs.

Code runs only when one of these holds, checked in this order:

=====================  ===================================================================
bundled                its content is bundled with the installed pipeyard: shipped in
                       ``community/``, or a copy (from GitHub, a saved folder, a repo) whose
                       sha256 is that of a bundled registry entry
explicit local         the caller named the local file or folder (``custom_pipeline=path``)
installed              an installed distribution registers it as an entry point
pinned mirror file     a file of diffusers' community mirror whose name and sha256 are pinned
                       in pipeyard's registry (``[[mirror]]`` of ``registry/hub.toml``): the
                       reviewed content only, another sha256 at that path is refused
trust store            its digest was added with :func:`pipeyard.trust.add`
trust_remote_code      the caller passed ``trust_remote_code=True``
=====================  ===================================================================

Everything else (a Hub repo, a community file at another revision, an unpinned mirror file, a
pipeline or component module inside a model repo, local or not) raises
:class:`~pipeyard.errors.UntrustedCodeError`. "Named by the caller" is a property of how the
:class:`~pipeyard.host.resolve.Source` was made: only
:func:`~pipeyard.host.resolve.resolve_source` on the caller's own ``custom_pipeline`` value
makes local sources; what a repository says is resolved by
:func:`~pipeyard.host.resolve.repository_source` and
:func:`~pipeyard.host.resolve.component_source`, which make none.

With ``PIPEYARD_DISABLE_REMOTE_CODE`` on, only bundled code runs, and a remote source that
cannot be bundled is refused by :func:`refuse_before_fetch` before it is downloaded. There is
no path around the gate: every source goes through :func:`require_trust` (diffusers #13691 and
CVE-2026-44513 were sources that skipped it).
"""

from __future__ import annotations

from .. import constants, errors
from . import mirror
from .resolve import Source, SourceKind, bundled_digests
from .trust_store import is_trusted

#: Why ``PIPEYARD_DISABLE_REMOTE_CODE`` refused a source, and what to change.
_DISABLED_REASON = "PIPEYARD_DISABLE_REMOTE_CODE=1 allows bundled pipelines only"
_DISABLED_REMEDY = "unset PIPEYARD_DISABLE_REMOTE_CODE; the other rules then apply"


def _may_be_bundled(source: Source) -> bool:
    """Whether a remote source is fetched even when remote code is disabled (decided by kind).

    A community file at a GitHub revision may equal a bundled file; a Hub repo or a model
    repo's module may too, but fetching one just to find out is the request the switch forbids.
    """
    return source.kind in (SourceKind.BUNDLED, SourceKind.GITHUB)


def _is_bundled(source: Source, digest: str) -> bool:
    """Bundled code: shipped in ``community/``, or any copy with a bundled file's sha256."""
    return source.kind is SourceKind.BUNDLED or digest in bundled_digests()


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
    if source.kind is SourceKind.MIRROR and mirror.is_pinned(source.name, digest):
        return "a mirror file reviewed and pinned by sha256 in pipeyard's registry"
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
    if source.kind is SourceKind.MIRROR:
        pinned = mirror.pinned_digest(source.name)
        why = (
            f"pipeyard's registry pins {source.name!r} at sha256 {pinned}, and this file differs"
            if pinned else "diffusers' mirror is remote code, and pipeyard's registry pins no file of that name"
        ) + ", and it is not in your trust store"
    return errors.UntrustedCodeError(source.describe(), commit, digest, path, why)


def require_trust(
    source: Source, digest: str, *, commit: str | None, path: str | None, trust_remote_code: bool
) -> str:
    """Return why the code may run, or raise :class:`~pipeyard.errors.UntrustedCodeError`.

    Args:
        path: where the user can read the refused code (a review copy), for the message.
    """
    reason = trust_reason(source, digest, trust_remote_code=trust_remote_code)
    if reason is not None:
        return reason
    raise _refusal(source, commit, digest, path)


def refuse_before_fetch(source: Source) -> None:
    """Raise :class:`~pipeyard.errors.UntrustedCodeError` now when fetching could not change it.

    With ``PIPEYARD_DISABLE_REMOTE_CODE`` on, a remote source that cannot be bundled (a Hub
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
