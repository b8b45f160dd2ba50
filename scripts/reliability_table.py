"""Print the reliability suite's table from the JSON lines its tests appended.

    python scripts/reliability_table.py .venv/reliability.jsonl

One row per scenario (summed over tests and workers), then a total. Exits 1 when any
scenario lost data, wrote outside its allowed roots or ran untrusted code, or when the
report is empty (a run that tallied nothing proves nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

COLUMNS = ("cases", "faults", "failures", "data_lost", "outside_writes", "untrusted_runs")
HEADERS = ("scenario", "cases run", "faults injected", "failures", "data lost", "writes outside roots", "untrusted code run")
MUST_BE_ZERO = ("failures", "data_lost", "outside_writes", "untrusted_runs")


def summarise(lines: list[str]) -> dict[str, dict[str, int]]:
    rows: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            row = rows[str(record["scenario"])]
            for column in COLUMNS:
                row[column] += int(record[column])
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"line {number} of the report is not a tally row ({exc}): {line[:120]!r}")
    return dict(sorted(rows.items()))


def markdown(rows: dict[str, dict[str, int]]) -> str:
    total = {c: sum(r[c] for r in rows.values()) for c in COLUMNS}
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for name, row in [*rows.items(), ("**total**", total)]:
        out.append("| " + " | ".join([name, *(str(row[c]) for c in COLUMNS)]) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"no report at {args.report}: did the reliability tests run?", file=sys.stderr)
        return 1
    rows = summarise(args.report.read_text(encoding="utf-8").splitlines())
    if not rows:
        print(f"{args.report} holds no tally rows", file=sys.stderr)
        return 1
    print(markdown(rows))
    bad = [name for name, row in rows.items() if any(row[c] for c in MUST_BE_ZERO)]
    if bad:
        print(f"\nscenarios with failures, lost data, outside writes or untrusted runs: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
