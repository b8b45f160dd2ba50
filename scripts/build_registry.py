"""Regenerate registry/index.json from community/*.py and registry/hub.toml.

Usage: ``python scripts/build_registry.py`` (``--check`` exits 1 when the index is stale).
The same as ``pipeyard registry build``; ``pipeyard registry check`` checks more (every
community file verified and tested, Hub entries checked offline) and runs in ``make test``.
"""

from __future__ import annotations

import argparse
import sys

from pipeyard import errors, registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the index is stale")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = registry.stale_entries()
            if stale:
                print(f"registry/index.json is stale for: {', '.join(stale)}; run scripts/build_registry.py")
                return 1
            print("registry/index.json is up to date")
            return 0
        print(f"wrote {registry.write_index()}")
        return 0
    except errors.PipeyardError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
