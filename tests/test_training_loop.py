"""The training loop (`training.loop`): rows, evaluations and checkpoints when due; a resumed run
repeats no metrics row and ends where an uninterrupted one does."""
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax import io_utils
from restrl_jax.checkpoint import Checkpointer
from restrl_jax.training import loop

STEPS = 7


class _Stop(Exception):
  pass


def _plan(tmp_path, **kw) -> loop.LoopPlan:
  return loop.LoopPlan(STEPS, tmp_path / "checkpoints", tmp_path,
                       checkpoint_at=loop.every(3, STEPS), log_at=loop.every(2, STEPS),
                       eval_at=loop.every(3, STEPS), keep_checkpoints=5,
                       step_files=("samples.jsonl",), **kw)


def _train(tmp_path, stop_at: int | None = None):
  """A toy run: the state is a running sum (w += step + 1); each step appends a sample row."""
  plan = _plan(tmp_path)
  start = loop.resume(plan, {"w": jnp.zeros((), jnp.float32)})

  def step_fn(state, batch):
    io_utils.append_jsonl(tmp_path / "samples.jsonl", [{"step": batch + 1}])
    return {"w": state["w"] + batch + 1}, {"loss": state["w"] * 0.5}

  def on_row(done, row):
    if done == stop_at:
      raise _Stop()

  state = loop.run(plan, start, step_fn, batches=lambda step: step,
                   evaluate=lambda done, s: {"w_seen": float(s["w"])},
                   meta=lambda done: {"done": done}, on_row=on_row)
  return start, state


def _rows(path):
  return [{k: v for k, v in r.items() if k != "time"} for r in io_utils.read_jsonl(path)]


def test_rows_evaluations_and_checkpoints_when_due(tmp_path):
  start, state = _train(tmp_path)
  assert start.step == 0 and start.meta == {}
  assert float(state["w"]) == sum(range(1, STEPS + 1))
  # eval at 0 (a fresh start), 3, 6, 7; loss rows at 2, 4, 6, 7 (the loss is w before the step)
  w = lambda done: float(sum(range(1, done + 1)))
  assert _rows(tmp_path / "metrics.jsonl") == [
      {"step": 0, "w_seen": 0.0}, {"step": 2, "loss": w(1) / 2}, {"step": 3, "w_seen": w(3)},
      {"step": 4, "loss": w(3) / 2}, {"step": 6, "loss": w(5) / 2}, {"step": 6, "w_seen": w(6)},
      {"step": 7, "loss": w(6) / 2}, {"step": 7, "w_seen": w(7)}]
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved == [3, 6, 7]
  with Checkpointer(tmp_path / "checkpoints") as ckpt:
    tree, meta = ckpt.restore(6, {"w": jnp.zeros((), jnp.float32)})
  assert meta == {"done": 6} and float(tree["w"]) == w(6)


@pytest.mark.parametrize("stop_at", [2, 4, 7])
def test_a_stopped_run_resumes_without_repeating_rows(tmp_path, stop_at):
  """Stopped at step 2 (before the first checkpoint: a fresh start again), 4 (resumes from 3)
  or 7 (after the last row, before the last checkpoint: resumes from 6)."""
  _, straight = _train(tmp_path / "straight")
  with pytest.raises(_Stop):
    _train(tmp_path / "stopped", stop_at)
  start, state = _train(tmp_path / "stopped")
  assert start.step == {2: 0, 4: 3, 7: 6}[stop_at]
  assert start.meta == ({"done": start.step} if start.step else {})
  np.testing.assert_array_equal(np.asarray(state["w"]), np.asarray(straight["w"]))
  for name in ("metrics.jsonl", "samples.jsonl"):
    assert _rows(tmp_path / "stopped" / name) == _rows(tmp_path / "straight" / name), name


def test_a_finished_run_takes_no_step(tmp_path):
  _train(tmp_path)
  before = _rows(tmp_path / "metrics.jsonl")
  start, state = _train(tmp_path)
  assert start.step == STEPS and float(state["w"]) == sum(range(1, STEPS + 1))
  assert _rows(tmp_path / "metrics.jsonl") == before
