"""KL estimators, loss aggregation and the GRPO loss (restrl_jax/rl/{kl,aggregation,losses}.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax.rl import aggregation as agg
from restrl_jax.rl import kl as klm
from restrl_jax.rl.losses import POLICY_LOSS, GRPOLossConfig, grpo_loss, ppo_clip_loss

LOSS = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


# ---- aggregation -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, expected", [
    ("token-mean", 7 / 3),                          # (1 + 2 + 4) / 3 tokens
    ("seq-mean-token-mean", (3 / 2 + 4 / 1) / 2),   # per-sequence means 1.5 and 4
    ("seq-mean-token-sum", (3 + 4) / 2),            # per-sequence sums 3 and 4
    ("seq-mean-token-sum-norm", 7 / (2 * 3)),       # Σ / (B · T)
    ("bnpo", 7 / 3), ("dr_grpo", 7 / 6), ("grpo", 2.75)])
def test_aggregation_modes_by_hand(mode, expected):
  assert float(agg.aggregate_loss(LOSS, MASK, mode)) == pytest.approx(expected)


def test_sum_norm_uses_the_given_constant_and_padding_rows_are_ignored():
  assert float(agg.aggregate_loss(LOSS, MASK, "seq-mean-token-sum-norm", 4)) == pytest.approx(7 / 8)
  padded_loss = jnp.concatenate([LOSS, jnp.full((1, 3), 9.0)])
  padded_mask = jnp.concatenate([MASK, jnp.zeros((1, 3))])
  for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
               "seq-mean-token-sum-norm"):
    assert float(agg.aggregate_loss(padded_loss, padded_mask, mode)) == pytest.approx(
        float(agg.aggregate_loss(LOSS, MASK, mode))), mode
  assert float(agg.aggregate_loss(LOSS, jnp.zeros_like(MASK), "token-mean")) == 0.0


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
                                  "seq-mean-token-sum-norm"])
def test_micro_batch_parts_add_up_to_the_full_batch(mode):
  rng = np.random.default_rng(0)
  loss = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  mask = jnp.asarray(rng.random((6, 5)) < 0.6, jnp.float32).at[4].set(0.0)
  parts = [agg.aggregate_parts(loss[i:i + 2], mask[i:i + 2], mode) for i in (0, 2, 4)]
  combined = sum(p[0] for p in parts) / sum(p[1] for p in parts)
  assert float(combined) == pytest.approx(float(agg.aggregate_loss(loss, mask, mode)), rel=1e-5)


def test_aggregation_errors():
  with pytest.raises(KeyError, match="unknown loss_aggregation 'sum'"):
    agg.aggregate_loss(LOSS, MASK, "sum")
  with pytest.raises(ValueError, match=r"\[B, T\]"):
    agg.aggregate_loss(LOSS, MASK[:, :2])


# ---- KL ------------------------------------------------------------------------------------------

def test_kl_estimators_match_formulas():
  logp = jnp.array([[-1.0, -2.0, -0.5]])
  ref = jnp.array([[-1.5, -2.0, -0.1]])
  d = np.asarray(ref - logp)
  np.testing.assert_allclose(klm.kl_estimate(logp, ref, "k1"), -d, rtol=1e-6)
  np.testing.assert_allclose(klm.kl_estimate(logp, ref, "k2"), 0.5 * d**2, rtol=1e-6)
  np.testing.assert_allclose(klm.kl_estimate(logp, ref, "k3"), np.exp(d) - d - 1, rtol=1e-5)
  assert klm.KL_ESTIMATOR.get("low_var_kl") is klm.k3 and klm.KL_ESTIMATOR.get("mse") is klm.k2


def test_k3_nonnegative_zero_at_equality_and_unbiased():
  rng = np.random.default_rng(0)
  logp, ref = (jnp.asarray(rng.normal(size=(4, 50)) * 3) for _ in range(2))
  assert float(jnp.min(klm.kl_estimate(logp, ref, "k3"))) >= 0.0
  assert float(jnp.max(jnp.abs(klm.kl_estimate(logp, logp, "k3")))) == 0.0
  # E_{x~p}[k3] = KL(p || q) for two categoricals
  p = np.array([0.5, 0.3, 0.2]); q = np.array([0.2, 0.5, 0.3])
  k3 = np.asarray(klm.kl_estimate(jnp.log(p)[None], jnp.log(q)[None], "k3"))[0]
  assert float((p * k3).sum()) == pytest.approx(float((p * np.log(p / q)).sum()), rel=1e-5)


def test_kl_clamp_and_reward_penalty():
  logp, ref = jnp.array([[0.0, 0.0]]), jnp.array([[5.0, 0.0]])
  assert float(klm.kl_estimate(logp, ref, "k3", clamp=10.0)[0, 0]) == 10.0
  kl = jnp.array([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]])
  mask = jnp.array([[1, 1, 0], [1, 0, 0]])
  np.testing.assert_allclose(klm.kl_reward_penalty(kl, mask, 0.5), [0.15, 0.5], rtol=1e-6)
  np.testing.assert_allclose(klm.kl_reward_penalty(kl, mask, 0.5, "mean"), [0.075, 0.5],
                             rtol=1e-6)
  np.testing.assert_allclose(klm.apply_kl_to_rewards(jnp.array([1.0, 0.0]), kl, mask, 0.5),
                             [0.85, -0.5], rtol=1e-6)


# ---- policy loss -------------------------------------------------------------------------------

def _grad_wrt_logp(logp, old, a, cfg):
  fn = lambda lp: ppo_clip_loss(lp, old, a, cfg).loss.sum()
  return np.asarray(jax.grad(fn)(logp))


def test_clipping_cuts_gradients_only_on_the_clipped_side():
  cfg = GRPOLossConfig(epsilon_low=0.2, epsilon_high=0.28)
  ratios = jnp.array([0.5, 0.9, 1.1, 1.5])
  old = jnp.zeros((1, 4))
  logp = jnp.log(ratios)[None]
  pos, neg = jnp.ones((1, 1)), -jnp.ones((1, 1))
  out = ppo_clip_loss(logp, old, pos, cfg)
  np.testing.assert_allclose(out.loss[0], -np.minimum(ratios, 1.28), rtol=1e-6)
  np.testing.assert_allclose(_grad_wrt_logp(logp, old, pos, cfg)[0], [-0.5, -0.9, -1.1, 0.0],
                             rtol=1e-5)
  out = ppo_clip_loss(logp, old, neg, cfg)
  np.testing.assert_allclose(out.loss[0], np.maximum(ratios, 0.8), rtol=1e-6)
  np.testing.assert_allclose(_grad_wrt_logp(logp, old, neg, cfg)[0], [0.0, 0.9, 1.1, 1.5],
                             rtol=1e-5)
  assert out.clipped_low.tolist() == [[True, False, False, False]]
  assert not out.clipped_high.any()


def test_clip_higher_is_asymmetric():
  cfg = GRPOLossConfig(epsilon_low=0.2, epsilon_high=0.28)
  logp = jnp.log(jnp.array([[1.25, 1.3]]))
  out = ppo_clip_loss(logp, jnp.zeros((1, 2)), jnp.ones((1, 1)), cfg)
  assert out.clipped_high.tolist() == [[False, True]]      # symmetric 0.2 would clip both
  sym = ppo_clip_loss(logp, jnp.zeros((1, 2)), jnp.ones((1, 1)), GRPOLossConfig())
  assert sym.clipped_high.tolist() == [[True, True]]


def test_dual_clip_bounds_negative_advantage_loss():
  cfg = GRPOLossConfig(dual_clip_c=3.0)
  ratios = jnp.array([2.0, 5.0])
  logp, old = jnp.log(ratios)[None], jnp.zeros((1, 2))
  a = -2.0 * jnp.ones((1, 1))
  out = ppo_clip_loss(logp, old, a, cfg)
  np.testing.assert_allclose(out.loss[0], [4.0, 6.0], rtol=1e-6)   # -A·ρ, then capped at -A·c
  np.testing.assert_allclose(_grad_wrt_logp(logp, old, a, cfg)[0], [4.0, 0.0], rtol=1e-5)
  assert out.dual_clipped.tolist() == [[False, True]]
  pos = ppo_clip_loss(logp, old, -a, cfg)                           # positive A: unaffected
  np.testing.assert_allclose(pos.loss[0], [-2.4, -2.4], rtol=1e-6)


def _toy(seed=0, b=3, t=4, v=5):
  rng = np.random.default_rng(seed)
  logits = jnp.asarray(rng.normal(size=(b, t, v)), jnp.float32)
  tokens = jnp.asarray(rng.integers(0, v, size=(b, t)))
  mask = jnp.asarray([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], jnp.float32)
  a = jnp.asarray([1.5, -0.5, 0.25], jnp.float32)
  return logits, tokens, mask, a


def _logp(logits, tokens):
  return jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], -1)[..., 0]


def test_on_policy_gradient_is_minus_advantage_times_grad_logp():
  logits, tokens, mask, a = _toy()
  cfg = GRPOLossConfig(beta_kl=0.0)
  grad = jax.grad(lambda th: grpo_loss(_logp(th, tokens), None, None, a, mask, cfg)[0])(logits)
  ref = jax.grad(lambda th: -jnp.sum(a[:, None] * _logp(th, tokens) * mask) / mask.sum())(logits)
  np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-7)
  loss, m = grpo_loss(_logp(logits, tokens), None, None, a, mask, cfg)
  expected = -float((a[:, None] * mask).sum() / mask.sum())           # ρ ≡ 1
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  assert float(m["ratio_mean"]) == 1.0 and float(m["clip_ratio/region_mean"]) == 0.0


def test_k3_term_has_zero_gradient_at_the_reference_and_adds_beta_kl():
  logits, tokens, mask, a = _toy(1)
  cfg = GRPOLossConfig(beta_kl=0.04)
  ref = _logp(logits, tokens)
  with_kl = jax.grad(lambda th: grpo_loss(_logp(th, tokens), None, ref, a, mask, cfg)[0])(logits)
  no_kl = jax.grad(lambda th: grpo_loss(_logp(th, tokens), None, None, a, mask, cfg)[0])(logits)
  np.testing.assert_allclose(with_kl, no_kl, atol=1e-7)
  shifted = ref - 0.3 * mask                                          # π_ref != π_θ
  loss, m = grpo_loss(_logp(logits, tokens), None, shifted, a, mask, cfg)
  k3 = np.exp(-0.3) + 0.3 - 1.0
  assert float(m["kl"]) == pytest.approx(k3, rel=1e-5)
  assert float(loss) == pytest.approx(float(m["loss/policy"]) + 0.04 * k3, rel=1e-5)
  off, m_off = grpo_loss(_logp(logits, tokens), None, shifted, a, mask,
                         GRPOLossConfig(kl_in_loss=False))
  assert float(off) == pytest.approx(float(m_off["loss/policy"])) and "kl" in m_off


@pytest.mark.parametrize("estimator, value, slope", [   # d = ref - logp = -0.3
    ("k1", 0.3, 1.0),                                     # -d;            d/dlogp = 1
    ("k2", 0.5 * 0.3**2, 0.3),                            # d²/2;          d/dlogp = -d
    ("k3", np.exp(-0.3) + 0.3 - 1.0, 1.0 - np.exp(-0.3))])  # e^d - d - 1; d/dlogp = 1 - e^d
def test_kl_term_value_and_gradient_by_hand(estimator, value, slope):
  logp = jnp.full((2, 3), -1.0)
  mask = jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])                # 3 tokens
  cfg = GRPOLossConfig(beta_kl=0.5, kl_estimator=estimator)
  loss_fn = lambda lp: grpo_loss(lp, None, logp - 0.3, jnp.zeros(2), mask, cfg)[0]
  assert float(loss_fn(logp)) == pytest.approx(0.5 * value, rel=1e-5)  # token mean of β·KL
  np.testing.assert_allclose(jax.grad(loss_fn)(logp), 0.5 * slope / 3 * mask, rtol=1e-5)


def test_log_ratio_is_clamped_at_max_log_ratio():
  """Ours only (TRL does not clamp): ρ = e^20 at most, and no gradient beyond the clamp."""
  logp, old = jnp.array([[25.0, 0.1]]), jnp.zeros((1, 2))
  cfg = GRPOLossConfig(beta_kl=0.0)
  loss_fn = lambda lp: grpo_loss(lp, old, None, -jnp.ones(1), jnp.ones((1, 2)), cfg)[0]
  # A = -1: per token max(ρ, clip(ρ, 0.8, 1.2)) = e^20 and e^0.1
  assert float(loss_fn(logp)) == pytest.approx((np.exp(20.0) + np.exp(0.1)) / 2, rel=1e-5)
  np.testing.assert_allclose(jax.grad(loss_fn)(logp), [[0.0, np.exp(0.1) / 2]], rtol=1e-5)


def test_metrics_on_a_hand_example():
  logp = jnp.log(jnp.array([[0.5, 1.0, 1.5], [2.0, 1.0, 1.0]]))
  mask = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
  a = jnp.array([-1.0, 1.0])
  entropy = jnp.array([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]])
  loss, m = grpo_loss(logp, jnp.zeros_like(logp), None, a, mask, GRPOLossConfig(), entropy)
  # per-token: A=-1 -> max(ρ, clip ρ): 0.8, 1.0, 1.5 ; A=+1 -> -min(ρ, 1.2) = -1.2
  assert float(loss) == pytest.approx((0.8 + 1.0 + 1.5 - 1.2) / 4, rel=1e-6)
  assert float(m["clip_ratio/low_mean"]) == pytest.approx(1 / 4)
  assert float(m["clip_ratio/high_mean"]) == pytest.approx(1 / 4)
  assert float(m["clip_ratio/region_mean"]) == pytest.approx(2 / 4)
  assert float(m["ratio_min"]) == pytest.approx(0.5) and float(m["ratio_max"]) == pytest.approx(2)
  assert float(m["ratio_mean"]) == pytest.approx(5 / 4)
  assert float(m["entropy"]) == pytest.approx(10 / 4)
  assert float(m["advantage_mean"]) == 0.0 and float(m["advantage_std"]) == pytest.approx(1.0)
  assert float(m["num_tokens"]) == 4.0 and float(m["loss_denominator"]) == 4.0


# _toy's batch on-policy (ρ ≡ 1): per-token loss -A, rows of 3, 2 and 4 tokens with A = 1.5,
# -0.5, 0.25, i.e. row sums -4.5, +1.0, -1.0 and row means -1.5, +0.5, -0.25; T = 4.
TOY_LOSS_BY_MODE = {
    "token-mean": (-4.5 + 1.0 - 1.0) / 9,                  # 9 tokens
    "seq-mean-token-mean": (-1.5 + 0.5 - 0.25) / 3,        # 3 sequences
    "seq-mean-token-sum": (-4.5 + 1.0 - 1.0) / 3,
    "seq-mean-token-sum-norm": (-4.5 + 1.0 - 1.0) / (3 * 4),
}
TOY_LOSS_BY_MODE.update(bnpo=TOY_LOSS_BY_MODE["token-mean"], dapo=TOY_LOSS_BY_MODE["token-mean"],
                        grpo=TOY_LOSS_BY_MODE["seq-mean-token-mean"],
                        dr_grpo=TOY_LOSS_BY_MODE["seq-mean-token-sum-norm"])


def test_jit_and_aggregation_choice_flow_through():
  logits, tokens, mask, a = _toy(2)
  logp = _logp(logits, tokens)
  assert sorted(agg.LOSS_AGGREGATION.names()) == sorted(TOY_LOSS_BY_MODE)
  for mode, expected in TOY_LOSS_BY_MODE.items():
    cfg = GRPOLossConfig(loss_aggregation=mode, beta_kl=0.0)
    loss, _ = jax.jit(grpo_loss, static_argnums=(5,))(logp, logp, None, a, mask, cfg)
    assert float(loss) == pytest.approx(expected, rel=1e-6), mode


def test_config_and_shape_errors():
  with pytest.raises(ValueError, match="loss_aggregation='mean'"):
    GRPOLossConfig(loss_aggregation="mean")
  with pytest.raises(ValueError, match="kl_estimator='k4'"):
    GRPOLossConfig(kl_estimator="k4")
  with pytest.raises(ValueError, match="dual_clip_c"):
    GRPOLossConfig(dual_clip_c=0.5)
  logp = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="advantages"):
    grpo_loss(logp, None, None, jnp.zeros(3), jnp.ones((2, 3)), GRPOLossConfig())
  with pytest.raises(ValueError, match="ref_logp"):
    grpo_loss(logp, None, jnp.zeros((2, 2)), jnp.zeros(2), jnp.ones((2, 3)), GRPOLossConfig())
  assert "ppo-clip" in POLICY_LOSS
