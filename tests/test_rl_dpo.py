"""ReST-DPO pairs and the sigmoid DPO loss (restrl_jax/rl/dpo.py)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax.rl.dpo import DPOPair, dpo_loss, dpo_pairs, pair_indices, sequence_logps
from restrl_jax.rl.rest_data import ProblemSamples


def _p(pid, rewards):
  return ProblemSamples(pid, "# s\n", tuple(f"s{i}\n" for i in range(len(rewards))),
                        tuple(rewards))


def test_pairs_pick_best_and_worst_with_marker():
  pairs = dpo_pairs([_p("a", [0.2, 1.0, 0.0, 0.5]), _p("b", [0.4] * 3), _p("c", [0.0, 1.0])])
  assert pairs == [DPOPair("a", "# s\n", "s1\n```", "s2\n```", 1.0, 0.0),
                   DPOPair("c", "# s\n", "s1\n```", "s0\n```", 1.0, 0.0)]


def test_tie_breaking_like_a_stable_sort():
  assert pair_indices((1.0, 0.0, 1.0, 0.0)) == (2, 1)     # last max, first min
  assert pair_indices((0.5,)) is None and pair_indices(()) is None
  assert pair_indices((0.3, 0.3)) is None
  pairs = dpo_pairs([_p("x", [0.0, 1.0])], closing_marker="</code>")
  assert pairs[0].chosen == "s1\n</code>" and pairs[0].rejected == "s0\n</code>"


def _log_sigmoid(x):
  return -math.log1p(math.exp(-x))


def test_loss_matches_formula_and_metrics():
  pc, pr = jnp.array([-10.0, -4.0]), jnp.array([-12.0, -3.0])
  rc, rr = jnp.array([-11.0, -5.0]), jnp.array([-11.0, -2.0])
  loss, m = dpo_loss(pc, pr, rc, rr, beta=0.1)
  z = [(-10 + 11) - (-12 + 11), (-4 + 5) - (-3 + 2)]            # [2, 2]
  expected = np.mean([-_log_sigmoid(0.1 * zi) for zi in z])
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  assert float(m["rewards/chosen"]) == pytest.approx(0.1)
  assert float(m["rewards/rejected"]) == pytest.approx(-0.1)
  assert float(m["rewards/margins"]) == pytest.approx(0.2)
  assert float(m["rewards/accuracies"]) == 1.0
  assert float(m["logps/chosen"]) == pytest.approx(-7.0)


def test_label_smoothing_valid_mask_and_gradient():
  pc, pr, rc, rr = (jnp.array(v) for v in ([-1.0, 0.0], [-3.0, 0.0], [-2.0, 9.0], [-2.0, 9.0]))
  loss, m = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1,
                     valid=jnp.array([True, False]))
  z = 0.5 * 2.0
  assert float(loss) == pytest.approx(-0.9 * _log_sigmoid(z) - 0.1 * _log_sigmoid(-z), rel=1e-6)
  assert float(m["rewards/accuracies"]) == 1.0
  g = jax.grad(lambda c: dpo_loss(c, pr, rc, rr, beta=0.5)[0])(pc)
  # d/dπc of -log σ(β z) averaged over 2 pairs = -β σ(-β z) / 2
  np.testing.assert_allclose(g, [-0.5 / (1 + math.exp(1.0)) / 2, -0.5 * 0.5 / 2], rtol=1e-5)


def test_sequence_logps_and_shape_errors():
  tok = jnp.array([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]])
  np.testing.assert_allclose(sequence_logps(tok, jnp.array([[1, 1, 0], [1, 1, 0]])), [-3.0, -1.0])
  with pytest.raises(ValueError, match=r"\[B\]"):
    dpo_loss(jnp.zeros(2), jnp.zeros(3), jnp.zeros(2), jnp.zeros(2))
  with pytest.raises(ValueError, match="label_smoothing"):
    dpo_loss(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), label_smoothing=0.5)
