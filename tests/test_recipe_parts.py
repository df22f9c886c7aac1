"""The parts configs/apps.py and configs/eval_suite.py add: the Table-1 row, the hold-out of
evaluation problems, the HumanEval+ loader, lists of data paths from the data root, the quick
shrink, and the configs themselves."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from restrl_jax import config_defaults, setup_runtime
from restrl_jax.config_checks import ConfigError
from restrl_jax.data import data_root
from restrl_jax.data.holdout import drop_held_out
from restrl_jax.data.registry import load_problems
from restrl_jax.errors import DataError
from restrl_jax.evaluation.table1 import table1_markdown, table1_row
from restrl_jax.execution import ExecutionPool
from restrl_jax.pipeline import data_paths
from restrl_jax.pipeline.stages import rest_grpo

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "benchmarks"


def _config_file(name: str):
  spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_table1_row_and_paper_average():
  scores = {"humaneval": 0.8, "humanevalplus": 0.7, "mbpp": 0.6, "mbppplus": 0.5, "apps": 0.2,
            "bigcodebench": 0.4}
  row = table1_row(scores)
  assert list(row) == ["HumanEval", "HumanEval+", "MBPP", "MBPP+", "APPS-500", "BCB", "Avg"]
  assert row["Avg"] == pytest.approx(0.25 * (0.75 + 0.55 + 0.2 + 0.4))
  assert "Avg" not in table1_row({"humaneval": 0.8})             # no Avg. without all six
  assert table1_markdown("m", row).splitlines()[2] == \
      "| m | 80.0 | 70.0 | 60.0 | 50.0 | 20.0 | 40.0 | 47.5 |"
  with pytest.raises(ValueError, match="not a Table 1 benchmark: \\['ds1000'\\]"):
    table1_row({"ds1000": 0.1})


def test_held_out_by_task_text_not_by_id():
  train = load_problems("bigcodebench", str(FIXTURES / "bigcodebench.jsonl"))
  evaluation = [train[0]]
  kept, dropped = drop_held_out(train, evaluation)
  assert dropped == [train[0].id] and [p.id for p in kept] == [p.id for p in train[1:]]
  # same id, other text (APPS numbers both of its splits from 0): kept
  import dataclasses
  other = dataclasses.replace(train[1], id=train[0].id)
  assert drop_held_out([other], evaluation) == ([other], [])
  # whitespace differences do not hide a copy
  spaced = dataclasses.replace(train[0], prompt="  " + train[0].prompt.replace(" ", "\n "))
  assert drop_held_out([spaced], evaluation)[1] == [train[0].id]


def test_humanevalplus_loader_scores_reference_and_wrong_programs():
  problems = load_problems("humanevalplus", str(FIXTURES / "humanevalplus.jsonl"))
  assert [p.id for p in problems] == ["HumanEval/0", "HumanEval/1"]
  add = problems[0]
  assert add.source == "humanevalplus" and add.starter_code == add.prompt
  assert len(add.tests.asserts) == 4 and add.metadata["num_base_tests"] == 2
  with ExecutionPool(num_workers=1) as pool:
    right = pool.submit([p.solutions[0] for p in problems], [p.tests for p in problems]).result()
    wrong = pool.submit([add.prompt + "    return a - b\n"], [add.tests]).result()[0]
  assert all(set(r.statuses) == {"pass"} for r in right)
  assert wrong.statuses == ("fail", "pass", "fail", "fail")      # 0 - 0 == 0 + 0
  with pytest.raises(ValueError, match="HumanEval\\+ has no bundled copy"):
    load_problems("humanevalplus")


def _root(tmp_path, *files) -> Path:
  root = tmp_path / "root"
  for benchmark, split, fixture in files:
    path = root / data_root.relative_file(benchmark, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((FIXTURES / fixture).read_text())
  return root


def test_lists_of_data_paths_are_filled_from_the_root(tmp_path):
  root = _root(tmp_path, ("bigcodebench", "train", "bigcodebench.jsonl"),
               ("bigcodebench", "test", "bigcodebench.jsonl"),
               ("humanevalplus", "test", "humanevalplus.jsonl"))
  c = config_defaults.base()
  c.workdir, c.data_dir, c.stages = "unused", str(root), ("rest_grpo", "evaluate_suite")
  c.rest, c.suite = config_defaults.rest(), config_defaults.suite()
  c.rest.update(dict(extra_benchmarks=("bigcodebench",), held_out=("bigcodebench",)))
  c.suite.benchmarks = ("humanevalplus", "bigcodebench")
  filled = data_paths.apply(c)
  assert filled == {"rest.extra_data_paths": (str(root / "bigcodebench" / "train.jsonl"),),
                    "rest.held_out_paths": (str(root / "bigcodebench" / "test.jsonl"),),
                    "suite.data_paths": (str(root / "humanevalplus" / "test.jsonl"),
                                         str(root / "bigcodebench" / "test.jsonl"))}
  assert c.suite.data_paths == filled["suite.data_paths"]
  # a benchmark of the list with no file stops before any stage, naming the file
  c.suite.data_paths, c.suite.benchmarks = (), ("humaneval",)
  with pytest.raises(DataError, match="humaneval/test.jsonl: missing humaneval test file"):
    data_paths.apply(c)


def test_training_sets_and_held_out_evaluation_tasks():
  rest = config_defaults.rest()
  bcb = str(FIXTURES / "bigcodebench.jsonl")
  rest.update(dict(benchmark="bigcodebench", data_path=bcb, extra_benchmarks=("humanevalplus",),
                   extra_data_paths=(str(FIXTURES / "humanevalplus.jsonl"),)))
  problems, facts = rest_grpo.training_problems(rest)
  assert facts == {"train_problems/bigcodebench": 2, "train_problems/humanevalplus": 2,
                   "held_out": 0, "train_problems": 4}
  rest.update(dict(held_out=("bigcodebench",), held_out_paths=(bcb,)))
  problems, facts = rest_grpo.training_problems(rest)
  assert facts["held_out"] == 2 and {p.source for p in problems} == {"humanevalplus"}
  rest.extra_benchmarks, rest.extra_data_paths = (), ()
  with pytest.raises(ConfigError, match="no training problems left: all 2 are problems"):
    rest_grpo.training_problems(rest)
  rest.extra_benchmarks, rest.extra_data_paths = ("humanevalplus", "mbpp"), (bcb,)
  with pytest.raises(ConfigError, match="extra_data_paths has 1 file\\(s\\) for the 2 bench"):
    rest_grpo.training_problems(rest)


def test_quick_shrinks_and_never_grows(monkeypatch):
  from restrl_jax.sampling import Buckets, buckets
  monkeypatch.setattr(buckets, "_MINIMUMS", dict(buckets._MINIMUMS))  # restored after the test
  c = _config_file("demo")
  before = c.rest.max_new_tokens                       # 64, below the quick cap of 128
  c.quick = True
  setup_runtime.apply_quick(c)
  assert c.rest.max_new_tokens == before == 64 and c.rest.num_problems == 8
  assert c.rest.curve_every == 1                        # the demo's curve, every step
  apps = _config_file("apps")
  apps.quick = True
  setup_runtime.apply_quick(apps)
  assert apps.rest.curve_every == 0                     # off stays off
  assert apps.grpo.max_new_tokens == 128 and apps.suite.apps_num_problems == 4
  assert apps.rest.num_problems == 8 and apps.mcts.decode_num_problems == 4
  # and the smallest shape buckets grow (fewer compiled programs), process-wide
  assert (Buckets().min_batch, Buckets().min_prompt) == (32, 256)
  assert Buckets(min_batch=1).batch(3) == 4


def test_recipe_configs_name_every_stage_and_need_a_data_root(tmp_path):
  apps = _config_file("apps")
  assert tuple(apps.stages) == ("rest_grpo", "collect_values", "train_value", "decode",
                                "evaluate_suite")
  assert apps.rest.benchmark == "apps" and tuple(apps.rest.extra_benchmarks) == ("bigcodebench",)
  assert tuple(apps.suite.benchmarks) == config_defaults.TABLE1_BENCHMARKS
  suite = _config_file("eval_suite")
  assert tuple(suite.stages) == ("evaluate_suite",) and suite.sampling.temperature == 0.7
  for c in (apps, suite):
    c.model.hf_path = str(tmp_path)
    with pytest.raises(ConfigError, match="required config field\\(s\\) not set: data_dir"):
      setup_runtime.validate(c)
