"""Rewrite the table of diffusers names in docs/compatibility.md from pipeyard.compat.layout.

    python scripts/build_compat_table.py          # rewrite the table
    python scripts/build_compat_table.py --check  # exit 1 when it is stale

tests/test_compat.py fails while the page misses a mapped module or name.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeyard.compat import layout

PAGE = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"
START, END = "<!-- layout table: start -->", "<!-- layout table: end -->"


def table() -> str:
    rows = ["| diffusers module | names |", "| --- | --- |"]
    for path in sorted(layout.MODULES):
        rows.append(f"| `{path}` | {', '.join(f'`{name}`' for name in layout.MODULES[path])} |")
    return "\n".join(rows)


def main() -> int:
    text = PAGE.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    updated = f"{head}{START}\n{table()}\n{END}{tail}"
    if "--check" in sys.argv:
        return 0 if updated == text else 1
    PAGE.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
