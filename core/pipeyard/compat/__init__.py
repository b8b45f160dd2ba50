"""diffusers compatibility: diffusers-written pipeline files run on pipeyard's runtime, unmodified.

A community file written for diffusers imports ``diffusers``. When the host imports a verified,
trusted module, every ``import diffusers...`` / ``from diffusers... import ...`` in it is
rewritten (:mod:`.rewrite`, on the syntax tree that was verified) to the same path under
``pipeyard.compat.diffusers``: a tree of read-only views (:mod:`.modules`) whose names are
pipeyard's own classes, as listed in :mod:`.layout`, the only place that knows diffusers'
module layout. Nothing named ``diffusers`` is added to or replaced in ``sys.modules``: a real
diffusers installed in the same process keeps working for everything else.

Before anything runs, :func:`.rewrite.unsupported_imports` lists every diffusers name a file
imports that pipeyard does not provide, so the host refuses it with one
:class:`~pipeyard.errors.DiffusersCompatibilityError` naming them and their lines.

The runtime (models, schedulers, pipelines) never imports this package.
"""

from __future__ import annotations

#: The diffusers release whose module layout and behaviour this package follows.
DIFFUSERS_VERSION = "0.42.1"

#: Distributions a hosted module gets from this package, installed or not, and their version.
PROVIDED_DISTRIBUTIONS = {"diffusers": DIFFUSERS_VERSION}

#: Where the views live: ``diffusers.x.y`` is served as ``pipeyard.compat.diffusers.x.y``.
VIEW_ROOT = "pipeyard.compat.diffusers"
