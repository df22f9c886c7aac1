"""Group advantages (restrl_jax/rl/advantages.py) against numpy computations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax.rl import advantages as adv

REWARDS = np.array([1.0, 0.0, 0.5, 0.5,      # informative group
                    0.3, 0.3, 0.3, 0.3,      # zero-variance group
                    0.0, 0.0, 0.0, 1.0],     # one success
                   np.float32)
G = 4


def _numpy_grpo(r, g, ddof=1, eps=1e-4):
  groups = r.astype(np.float64).reshape(-1, g)
  mean = groups.mean(1, keepdims=True)
  return ((groups - mean) / (groups.std(1, ddof=ddof, keepdims=True) + eps)).reshape(-1)


def test_grpo_matches_numpy_unbiased_std():
  out = np.asarray(adv.compute_advantages(REWARDS, G))
  np.testing.assert_allclose(out, _numpy_grpo(REWARDS, G), rtol=1e-5, atol=1e-6)
  # group 1 by hand: mean 0.5, unbiased std sqrt(0.5/3)
  np.testing.assert_allclose(out[:4], np.array([0.5, -0.5, 0, 0]) / (np.sqrt(0.5 / 3) + 1e-4),
                             rtol=1e-5)
  assert np.all(out[4:8] == 0.0)


def test_zero_variance_group_is_exactly_zero_in_every_mode():
  r = np.full(8, 0.7, np.float32)                       # 0.7 is inexact in float32
  for cfg in (adv.AdvantageConfig(), adv.AdvantageConfig(scale="batch"),
              adv.AdvantageConfig(estimator="rloo"), adv.AdvantageConfig(estimator="drgrpo")):
    assert np.all(np.asarray(adv.compute_advantages(r, 8, cfg)) == 0.0), cfg


def test_ddof0_and_eps_options():
  cfg = adv.AdvantageConfig(ddof=0, eps=1e-6)
  out = np.asarray(adv.compute_advantages(REWARDS, G, cfg))
  np.testing.assert_allclose(out, _numpy_grpo(REWARDS, G, ddof=0, eps=1e-6), rtol=1e-5)


def test_batch_scale_uses_one_std():
  out = np.asarray(adv.compute_advantages(REWARDS, G, adv.AdvantageConfig(scale="batch")))
  groups = REWARDS.astype(np.float64).reshape(-1, G)
  expected = (groups - groups.mean(1, keepdims=True)) / (REWARDS.std(ddof=1) + 1e-4)
  np.testing.assert_allclose(out, expected.reshape(-1), rtol=1e-5, atol=1e-7)


def test_drgrpo_is_centering_only():
  for cfg in (adv.AdvantageConfig(estimator="drgrpo"), adv.AdvantageConfig(scale="none")):
    out = np.asarray(adv.compute_advantages(REWARDS, G, cfg))
    groups = REWARDS.reshape(-1, G)
    np.testing.assert_allclose(out, (groups - groups.mean(1, keepdims=True)).reshape(-1),
                               atol=1e-7)


def test_rloo_leave_one_out():
  out = np.asarray(adv.compute_advantages(REWARDS, G,
                                          adv.AdvantageConfig(estimator="rloo", scale="none")))
  expected = [r - (REWARDS[(i // G) * G:(i // G + 1) * G].sum() - r) / (G - 1)
              for i, r in enumerate(REWARDS)]
  np.testing.assert_allclose(out, expected, atol=1e-6)
  assert out[0] == pytest.approx(1.0 - (0.0 + 0.5 + 0.5) / 3)
  # equals G/(G-1) times the group-centred advantage
  np.testing.assert_allclose(out, G / (G - 1) * (REWARDS - REWARDS.reshape(-1, G).mean(
      1).repeat(G)), atol=1e-6)


def test_jit_with_static_group_size():
  fn = jax.jit(adv.compute_advantages, static_argnums=(1, 2))
  np.testing.assert_allclose(fn(jnp.asarray(REWARDS), G, adv.AdvantageConfig()),
                             _numpy_grpo(REWARDS, G), rtol=1e-5, atol=1e-6)


def test_frac_reward_zero_std_and_metrics():
  out = adv.compute_advantages(REWARDS, G)
  np.testing.assert_array_equal(adv.zero_std_groups(REWARDS, G), [False, True, False])
  m = adv.reward_metrics(REWARDS, out, G)
  assert float(m["frac_reward_zero_std"]) == pytest.approx(1 / 3)
  assert float(m["reward_mean"]) == pytest.approx(REWARDS.mean())
  assert float(m["reward_std"]) == pytest.approx(REWARDS.std(), rel=1e-5)
  assert float(m["advantage_max"]) == pytest.approx(np.max(_numpy_grpo(REWARDS, G)), rel=1e-5)


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match="group_size = 5"):
    adv.compute_advantages(REWARDS, 5)
  with pytest.raises(ValueError, match="ddof=1"):
    adv.compute_advantages(REWARDS, 1)
  with pytest.raises(ValueError, match="estimator='ppo'"):
    adv.AdvantageConfig(estimator="ppo")
  with pytest.raises(ValueError, match="scale"):
    adv.AdvantageConfig(scale="token")
  assert set(adv.ADVANTAGE.names()) >= {"grpo", "drgrpo", "rloo"}
