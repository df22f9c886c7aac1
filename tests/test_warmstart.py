"""Warm start: SFT data in the RL prompt format, a short real training run with resume, the stage,
and the shipped demo policy (loads like a Hugging Face model)."""
import json

import jax
import numpy as np
import pytest
import transformers

from restrl_jax import config_defaults, io_utils, models
from restrl_jax.pipeline.stages.warmstart import METHOD
from restrl_jax.pipeline.stages.warmstart import run as warmstart_stage
from restrl_jax.data.prompts import assemble_program, build_prompt, extract_code
from restrl_jax.data.synthetic import load_synthetic
from restrl_jax.tokenizer import embedded_tokenizer, load_tokenizer
from restrl_jax.warmstart import (WarmstartConfig, batch_indices, collate, completion_text,
                                  make_example, make_examples, policy_config,
                                  shipped_policy_path, train_policy)
from restrl_jax.warmstart.__main__ import parse
from restrl_jax.warmstart.train import served_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
  return embedded_tokenizer()


@pytest.fixture(scope="module")
def train_problems():
  return load_synthetic("train", 64)


def test_completion_continues_the_rl_prompt(tokenizer, train_problems):
  for p in train_problems[:20]:
    text = completion_text(p)
    assert text.endswith("\n```")
    # what the RL pipeline would execute from this completion is the reference itself
    assert assemble_program(p.starter_code, text) == p.metadata["solution"].rstrip()
    ex = make_example(p, tokenizer)
    assert ex.prompt.tolist() == tokenizer.encode(build_prompt(p, p.starter_code, tokenizer))
    assert ex.completion[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ex.completion[:-1].tolist()) == text


def test_collate_masks_only_the_completion(tokenizer, train_problems):
  examples, dropped = make_examples(train_problems[:5], tokenizer, max_len=256)
  assert dropped == 0
  batch = collate(examples, pad_id=tokenizer.pad_token_id, pad_multiple=32)
  assert batch["tokens"].shape[1] % 32 == 0
  for row, e in enumerate(examples):
    n, p = len(e.prompt) + len(e.completion), len(e.prompt)
    assert batch["attention_mask"][row].sum() == n
    assert batch["loss_mask"][row].sum() == len(e.completion)
    assert batch["loss_mask"][row, :p].sum() == 0 and batch["loss_mask"][row, p:n].all()
    learned = batch["tokens"][row][batch["loss_mask"][row] == 1]
    assert extract_code(tokenizer.decode(learned[:-1].tolist())) == extract_code(
        completion_text(train_problems[row]))
  with pytest.raises(ValueError, match="max_len"):
    make_examples(train_problems[:5], tokenizer, max_len=10)


def test_batch_indices_cover_each_epoch_and_are_stateless():
  n, b = 10, 4
  stream = np.concatenate([batch_indices(s, b, n, seed=3) for s in range(5)])  # 2 epochs
  assert sorted(stream[:n]) == list(range(n)) and sorted(stream[n:2 * n]) == list(range(n))
  np.testing.assert_array_equal(batch_indices(2, b, n, seed=3), stream[8:12])
  assert not np.array_equal(stream[:n], stream[n:2 * n])


def _short_cfg():
  return WarmstartConfig(num_train_problems=64, steps=24, batch_size=4, learning_rate=3e-3,
                         warmup_steps=4, checkpoint_every=8, log_every=1, max_len=224,
                         pad_multiple=224)


class _Interrupt(Exception):
  pass


@pytest.mark.slow
def test_short_run_learns_and_resumes_exactly(tmp_path, tokenizer):
  cfg, seen = _short_cfg(), {}

  def interrupt_at_20(step, metrics):
    seen[step] = metrics["loss"]
    if step == 20:
      raise _Interrupt()

  with pytest.raises(_Interrupt):
    train_policy(cfg, tmp_path, on_step=interrupt_at_20)
  assert not (tmp_path / "policy").exists()
  summary = train_policy(cfg, tmp_path)
  assert summary["resumed_from"] == 16 and summary["steps"] == 24
  records = io_utils.read_jsonl(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in records] == list(range(1, 25))  # 17-20 rewritten once, not twice
  losses = {r["step"]: r["loss"] for r in records}
  # steps 17-20 re-run from the step-16 checkpoint reproduce the interrupted run's losses
  for step in range(17, 21):
    assert losses[step] == pytest.approx(seen[step], rel=1e-4), step
  for step in range(1, 17):
    assert losses[step] == seen[step]
  first, last = np.mean([losses[s] for s in range(1, 5)]), np.mean([losses[s] for s in range(21, 25)])
  assert last < first - 1.0, losses
  config, _ = models.load_hf(tmp_path / "policy")
  tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "policy"))
  assert config == policy_config(tok, "tiny") and len(tok) == len(tokenizer)


def test_shipped_policy_loads_like_a_hf_model(tmp_path, tokenizer):
  path = shipped_policy_path()
  config, params = models.load_hf(path)
  tok = load_tokenizer(path)  # transformers' fast tokenizer over the saved tokenizer.json
  assert config.vocab_size == len(tok) == len(tokenizer)
  assert config.eos_token_ids == (tok.eos_token_id,) and config.pad_token_id == tok.pad_token_id
  # what the policy was trained on: the tokenizer as it is served next to the model, which is
  # the embedded tokenizer's own segmentation
  served = served_tokenizer(config, tokenizer, tmp_path / "served")
  text = "Problem: keep the numbers above 12.\n```python\ndef solve(xs):\n    return [x for x in xs]"
  assert tok.encode(text) == served.encode(text) == tokenizer.encode(text)
  size = sum(f.stat().st_size for f in path.iterdir())
  assert size < 10 * 2**20
  hf = json.loads((path / "config.json").read_text())
  assert hf["architectures"] == [config.architecture]
  assert sum(x.size for x in jax.tree.leaves(params)) == hf_params(config)


def hf_params(config):
  return sum(int(np.prod(s)) for s in jax.tree.leaves(
      models.param_shapes(config), is_leaf=lambda s: isinstance(s, tuple)))


def test_stage_places_and_evaluates_the_shipped_policy(tmp_path):
  from restrl_jax.pipeline import StageContext  # pylint: disable=import-outside-toplevel
  config = config_defaults.base()
  config.warmstart = config_defaults.warmstart()
  config.warmstart.update(eval_num_problems=8, eval_samples=2)
  config.sampling.update(max_new_tokens=128, batch_size=64)
  config.execution.num_workers = 2
  ctx = StageContext(config=config, workdir=tmp_path, stage_dir=tmp_path / "warmstart")
  ctx.stage_dir.mkdir()
  summary = warmstart_stage(ctx)
  assert (tmp_path / "warmstart" / "policy" / "model.safetensors").is_file()
  (row,) = summary["rows"]
  assert row["method"] == METHOD
  assert 0.0 <= row["strict_accuracy"] <= row["test_case_average"] <= 1.0
  assert summary["num_problems"] == 8 and summary["num_samples"] == 16
  assert json.loads((tmp_path / "warmstart" / "eval.json").read_text())["num_samples"] == 16


def test_cli_overrides():
  args = parse(["--out", "x", "--steps", "7", "--difficulty", "2", "--learning_rate", "1e-3"])
  assert (args.steps, args.difficulty, args.learning_rate, args.batch_size) == (7, "2", 1e-3, None)
