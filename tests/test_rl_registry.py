"""The name -> function registries of restrl_jax/rl (restrl_jax/rl/registry.py)."""
import pytest

from restrl_jax.rl.advantages import ADVANTAGE
from restrl_jax.rl.aggregation import LOSS_AGGREGATION
from restrl_jax.rl.kl import KL_ESTIMATOR
from restrl_jax.rl.losses import POLICY_LOSS
from restrl_jax.rl.registry import Registry


def test_register_get_aliases_and_errors():
  reg = Registry("widget")

  @reg.register("a", "alias-a")
  def a():
    return 1

  assert reg.get("a") is a and reg.get("alias-a") is a
  assert reg.names() == ("a", "alias-a") and "a" in reg and list(reg) == ["a", "alias-a"]
  with pytest.raises(ValueError, match="widget 'a' is registered twice"):
    reg.register("a")(lambda: 2)
  with pytest.raises(KeyError, match="unknown widget 'b'; registered: a, alias-a"):
    reg.get("b")
  with pytest.raises(ValueError, match="kind='b' is not a registered widget"):
    reg.check("b", "kind")


def test_project_registries_hold_the_documented_names():
  assert {"grpo", "drgrpo", "dr_grpo", "rloo"} <= set(ADVANTAGE.names())
  assert {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
          "seq-mean-token-sum-norm", "bnpo", "dapo", "grpo", "dr_grpo"} <= set(
              LOSS_AGGREGATION.names())
  assert {"k1", "k2", "k3", "kl", "mse", "low_var_kl"} <= set(KL_ESTIMATOR.names())
  assert {"ppo-clip", "grpo"} <= set(POLICY_LOSS.names())
