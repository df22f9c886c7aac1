"""Value model (restrl_jax.value): data, batched/sharded scoring, MSE training, orbax saves."""
import jax
import numpy as np
import pytest

from restrl_jax import io_utils, models, parallel
from restrl_jax.value import data
from restrl_jax.value.model import ValueModel, init_value_params, load_value_model
from restrl_jax.value.train import ValueTrainConfig, eval_metrics, train_value
from restrl_jax.tokenizer import embedded_tokenizer
from restrl_jax.warmstart.train import export_policy, policy_config


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
  tok = embedded_tokenizer()
  cfg = policy_config(tok)
  params = models.init_params(cfg, jax.random.key(0))
  path = export_policy(cfg, params, tok, tmp_path_factory.mktemp("policy") / "policy")
  return cfg, params, tok, path


def test_examples_use_the_spec_input_text_and_split_rule():
  recs = [{"prompt": "Q", "state": "x = 1\n", "value": 0.25, "kind": "node"},
          {"prompt": "Q", "answer": "y", "reward": 1.0},
          {"prompt": "Q", "state": "z", "value": 0.5, "kind": "terminal"}]
  ex = data.examples_from_records(recs)
  assert [e.text for e in ex] == ["\n<prompt>\nQ\n<answer>\nx = 1\n\n", "\n<prompt>\nQ\n<answer>\ny\n"]
  assert [e.target for e in ex] == [0.25, 1.0]
  with pytest.raises(ValueError, match="record 0 has value 1.5"):
    data.examples_from_records([{"prompt": "Q", "state": "s", "value": 1.5}])
  with pytest.raises(ValueError, match="record 0 has none of the fields"):
    data.examples_from_records([{"state": "s", "value": 0.5}])
  many = [data.ValueExample(str(i), 0.0, "") for i in range(4000)]
  for n, held in ((4000, 200), (1000, 100), (40, 20)):
    train, ev = data.split_examples(many[:n], 0.05, 100, seed=1)
    assert (len(train), len(ev)) == (n - held, held)
    assert not {e.text for e in train} & {e.text for e in ev}


def test_left_truncation_and_left_padding(policy):
  tok = policy[2]
  text = "\n<prompt>\nabc\n<answer>\n" + "print(x)\n" * 20
  full = np.asarray(tok(text)["input_ids"])
  (cut,) = data.encode(tok, [text], 10)
  np.testing.assert_array_equal(cut, full[-10:])
  batch = data.make_batch([np.array([5, 6, 7]), np.array([8])], [0.5, 1.0], 4, pad_id=0,
                          pad_multiple=8)
  assert batch["tokens"].shape == (4, 8)
  np.testing.assert_array_equal(batch["tokens"][0], [0, 0, 0, 0, 0, 5, 6, 7])
  np.testing.assert_array_equal(batch["mask"][1], [0] * 7 + [1])
  np.testing.assert_array_equal(batch["weight"], [1, 1, 0, 0])


def test_batched_and_sharded_scores_equal_the_unpadded_forward(policy):
  cfg, params, tok, _ = policy
  vparams = init_value_params(cfg, params, jax.random.key(3))
  vparams["head"]["kernel"] = vparams["head"]["kernel"] * 20.0  # spread values across [0, 1]
  texts = [f"\n<prompt>\nq{i}\n<answer>\n" + "x = 1\n" * (3 * i) for i in range(6)]
  # reference: one RIGHT-padded batch (causal attention: real tokens never see the pads)
  ids = [tok(t)["input_ids"] for t in texts]
  tokens = np.zeros((len(ids), max(map(len, ids))), np.int32)
  mask = np.zeros_like(tokens)
  for i, x in enumerate(ids):
    tokens[i, :len(x)], mask[i, :len(x)] = x, 1
  ref = np.asarray(models.value_from(cfg, vparams, tokens, mask))
  vm = ValueModel(cfg, vparams, tok, max_length=512, batch_size=4, pad_multiple=16)
  np.testing.assert_allclose(vm.predict(texts), ref, atol=2e-4)
  np.testing.assert_allclose(vm.score(texts), np.clip(ref, 0, 1), atol=2e-4)
  assert ((ref < 0) | (ref > 1)).any()  # clipping is exercised
  mesh = parallel.make_mesh((1, 8, 1))
  sharded = ValueModel(cfg, vparams, tok, max_length=512, batch_size=8, pad_multiple=16,
                       mesh=mesh)
  np.testing.assert_allclose(sharded.predict(texts), ref, atol=2e-4)


def _records(n: int) -> list[dict]:
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    good = bool(rng.integers(2))
    state = ("print(total)\n" if good else "x = x\n") * int(rng.integers(1, 4))
    out.append({"prompt": f"Problem {i % 7}", "state": state, "value": 0.8 if good else 0.2,
                "kind": "node"})
  return out


def _cfg() -> ValueTrainConfig:
  return ValueTrainConfig(learning_rate=3e-3, epochs=3, batch_size=8, max_length=128,
                          min_eval=16, evals=3, dtype="float32", pad_multiple=64,
                          score_batch_size=16, log_every=1)


def test_training_lowers_held_out_mse_and_reports_spec_accuracy(policy, tmp_path):
  cfg, params, tok, path = policy
  examples = data.examples_from_records(_records(80))
  vcfg = _cfg()
  _, held = data.split_examples(examples, vcfg.eval_fraction, vcfg.min_eval, vcfg.seed)
  y = np.array([e.target for e in held])
  seen = []
  summary = train_value(vcfg, examples, path, tmp_path, on_eval=lambda s, m: seen.append(m))
  assert summary["num_eval"] == 16 and summary["steps"] == 3 * 8 and len(seen) == 3
  assert summary["best_eval_loss"] == min(m["eval_loss"] for m in seen)
  best = load_value_model(summary["value_model_path"], batch_size=16, pad_multiple=64)
  pred = best.predict([e.text for e in held])
  assert np.mean((pred - y) ** 2) == pytest.approx(summary["best_eval_loss"], rel=1e-4)
  accuracy = np.mean(np.abs(np.clip(pred, 0, 1) - y) < 0.05)  # docs/method.md §6 metric, recomputed
  assert summary["best_eval_accuracy"] == pytest.approx(accuracy)
  best.params = init_value_params(cfg, params, jax.random.key(vcfg.seed))  # the start point
  before = eval_metrics(best.predict([e.text for e in held]), y)
  assert summary["best_eval_loss"] < 0.5 * before["eval_loss"]
  # re-running resumes from the last checkpoint: nothing left to train, same best model
  again = train_value(vcfg, examples, path, tmp_path)
  assert again["resumed_from"] == summary["steps"]
  assert again["best_eval_loss"] == summary["best_eval_loss"]


def test_bad_value_inputs_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="values.jsonl"):
    data.read_examples(tmp_path / "values.jsonl")
  with pytest.raises(FileNotFoundError, match="not a saved value model"):
    load_value_model(tmp_path)
  with pytest.raises(ValueError, match="at least 2 examples"):
    data.split_examples([data.ValueExample("a", 0.0, "")])


class _Interrupt(Exception):
  pass


def test_resumed_run_writes_each_metrics_row_once(policy, tmp_path):
  """A run stopped at its second evaluation (step 16, after the step-8 checkpoint) and re-run
  resumes from step 8 and ends with the uninterrupted run's metrics rows, none twice."""
  _, _, _, path = policy
  examples, vcfg = data.examples_from_records(_records(80)), _cfg()
  train_value(vcfg, examples, path, tmp_path / "straight")

  def stop_at_16(step, scores):
    if step == 16:
      raise _Interrupt()

  with pytest.raises(_Interrupt):
    train_value(vcfg, examples, path, tmp_path / "resumed", on_eval=stop_at_16)
  cut = io_utils.read_jsonl(tmp_path / "resumed" / "metrics.jsonl")
  assert max(r["step"] for r in cut) == 16          # steps 9-16 were logged before the stop
  again = train_value(vcfg, examples, path, tmp_path / "resumed")
  assert again["resumed_from"] == 8
  rows = {name: io_utils.read_jsonl(tmp_path / name / "metrics.jsonl")
          for name in ("straight", "resumed")}
  keys = lambda rs: [(r["step"], tuple(sorted(k for k in r if k != "time"))) for r in rs]
  assert keys(rows["resumed"]) == keys(rows["straight"])
  assert len(set(keys(rows["resumed"]))) == len(rows["resumed"]) == 24 + 3   # a loss row a step,
  for a, b in zip(rows["straight"], rows["resumed"]):                        # a row an eval
    for k in a:
      if k != "time":
        assert b[k] == pytest.approx(a[k], rel=1e-4), (a["step"], k)
