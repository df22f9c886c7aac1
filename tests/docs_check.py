"""The check that docs/results.md and docs/results.json equal what an experiment's `report`
writes from the records kept under docs/runs (experiment drivers' tests use it)."""
import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]


def assert_report_regenerates_docs(tmp_path: Path, kept: Path, begin_marker: str,
                                   report: Callable[[Sequence[str]], object]) -> None:
  """`report(["report", "--record", kept, "--docs", <copy of docs>])` leaves the copies of
  results.md and results.json equal to the repository's; with no records kept, the docs carry
  no block that starts with `begin_marker`."""
  if not list(kept.glob("seed*.json")):
    assert begin_marker not in (REPO / "docs" / "results.md").read_text()
    return
  docs = tmp_path / "docs"
  docs.mkdir()
  shutil.copy(REPO / "docs" / "results.md", docs / "results.md")
  shutil.copy(REPO / "docs" / "results.json", docs / "results.json")
  report(["report", "--record", str(kept), "--docs", str(docs)])
  assert (docs / "results.md").read_text() == (REPO / "docs" / "results.md").read_text()
  assert (json.loads((docs / "results.json").read_text())
          == json.loads((REPO / "docs" / "results.json").read_text()))
