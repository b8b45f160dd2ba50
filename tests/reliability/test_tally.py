"""The table `make reliability` prints is only as good as its tally: prove the plumbing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "reliability_table.py"


def _run(report: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(report)], capture_output=True, text=True, check=False)


def test_rows_are_summed_per_scenario(tmp_path):
    report = tmp_path / "r.jsonl"
    report.write_text(
        "".join(json.dumps({"scenario": "s", "cases": n, "faults": n, "failures": 0, "data_lost": 0,
                            "outside_writes": 0, "untrusted_runs": 0}) + "\n" for n in (3, 4))
    )
    done = _run(report)
    assert done.returncode == 0, done.stderr
    assert "| s | 7 | 7 | 0 | 0 | 0 | 0 |" in done.stdout


def test_a_scenario_that_lost_data_fails_the_table(tmp_path):
    report = tmp_path / "r.jsonl"
    report.write_text(json.dumps({"scenario": "disk full", "cases": 1, "faults": 1, "failures": 0,
                                  "data_lost": 1, "outside_writes": 0, "untrusted_runs": 0}) + "\n")
    done = _run(report)
    assert done.returncode == 1
    assert "disk full" in done.stderr


def test_an_empty_or_missing_report_proves_nothing(tmp_path):
    assert _run(tmp_path / "absent.jsonl").returncode == 1
    (tmp_path / "empty.jsonl").write_text("")
    assert _run(tmp_path / "empty.jsonl").returncode == 1
