"""The results tables in the docs are what benchmarks/tables.py writes from benchmarks/results/, and every
results JSON names the commit it was measured at."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("bench_tables", ROOT / "benchmarks" / "tables.py")
tables = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tables)


def test_committed_docs_equal_what_tables_py_writes():
    diffs = tables.differences()
    assert not diffs, "run `python benchmarks/tables.py` (and commit the docs):\n" + "\n".join(diffs)


def test_a_hand_edited_number_is_caught():
    text = (ROOT / "README.md").read_text("utf-8")
    region = next(m for m in tables.REGION.finditer(text) if m.group(2) == "readme-results")
    body = region.group(3)
    number = re.search(r"\| (\d+\.\d) ± ", body)
    edited = body[:number.start(1)] + f"{float(number.group(1)) + 0.1:.1f}" + body[number.end(1):]
    text = text[:region.start(3)] + edited + text[region.end(3):]
    assert tables.stale("README.md", text) == ["README.md: table readme-results differs from what "
                                               "benchmarks/tables.py writes"]


def test_an_unknown_table_is_refused_by_name():
    with pytest.raises(SystemExit, match="unknown table 'no-such-table'"):
        tables.render(ROOT / "README.md", "<!-- table:no-such-table -->\n<!-- /table -->\n")


def results_files() -> list[Path]:
    return sorted(tables.RESULTS.glob("*.json*")) + [tables.ZOO / "zoo_report.json"]


@pytest.mark.parametrize("path", results_files(), ids=lambda p: p.name)
def test_every_result_names_the_commit_measured(path: Path):
    text = path.read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" \
        else [json.loads(text)]
    missing = [i for i, r in enumerate(rows) if not isinstance(r.get("commit"), str) or not r["commit"].strip()]
    assert not missing, f"{path.name}: rows {missing} have no \"commit\" (the commit measured, or \"unknown\")"


def test_commit_says_unknown_where_the_json_does():
    assert tables.commit({"commit": "unknown"}) == "commit unknown"
    assert tables.commit({"commit": "d2e7766 (rm-vote added there)"}) == "commit `d2e7766`"
    assert tables.commit([{"commit": "abc1234"}, {"commit": "abc1234"}]) == "commit `abc1234`"
