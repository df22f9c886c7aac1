"""Our GRPO loss and its gradient against TRL's own loss code, run in PyTorch (an outside reference).

TRL's `GRPOTrainer._compute_loss(model, inputs)` is called unbound on a stand-in trainer that
holds only the attributes the method reads and hands it the per-token log-probs directly (its
`_get_per_token_logps_and_entropies`), so TRL's ratio, clipping, KL and aggregation code runs
unchanged on random batches. Loss and d loss / d logp [B, T] are compared with
`restrl_jax.rl.losses.grpo_loss` for every TRL option that ours has:

  TRL loss_type   ours (GRPOLossConfig.loss_aggregation)
  "grpo"          "seq-mean-token-mean"
  "bnpo"          "token-mean"
  "dapo"          "token-mean" (TRL divides by num_items_in_batch, the batch's token count)
  "dr_grpo"       "seq-mean-token-sum-norm", norm_length = max_completion_length
  "luspo"         "seq-mean-token-sum" (token-level importance sampling)

crossed with epsilon (low) / epsilon_high, beta > 0 (k3 KL), TRL `delta` (= our dual_clip_c,
for delta >= 1 + epsilon_high), on-policy (no old log-probs) and off-policy ratios, and [B] or
[B, T] advantages. The clip-ratio and KL metrics are compared too.

Not compared, because ours has no such option: loss types cispo / sapo / vespo,
importance_sampling_level="sequence" (GSPO), top_entropy_quantile, off_policy_mask_threshold,
the entropy bonus, vLLM importance-sampling correction, and use_bias_correction_kl, which
multiplies the k3 term by the (differentiable) ratio and is TRL 1.16's DEFAULT: ours is TRL with
use_bias_correction_kl=False, the plain k3 penalty of the paper / TRL 0.18. TRL computes its group
advantages inline in `_generate_and_score_completions` (no callable without generation), so
advantages.py is checked against numpy in test_rl_advantages.py instead.
"""
import collections
import types
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax.rl.losses import GRPOLossConfig, grpo_loss

torch = pytest.importorskip("torch")
trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")

pytestmark = pytest.mark.parity

AGGREGATION = {"grpo": "seq-mean-token-mean", "bnpo": "token-mean", "dapo": "token-mean",
               "dr_grpo": "seq-mean-token-sum-norm", "luspo": "seq-mean-token-sum"}
B, T, MAX_COMPLETION = 6, 7, 9


class TRLLossHost:
  """The attributes `GRPOTrainer._compute_loss` reads; log-probs come from `self.logp`."""

  def __init__(self, logp, loss_type, beta, epsilon_low, epsilon_high, delta):
    self.logp = logp                                             # [B, T] torch leaf
    self.loss_type, self.beta = loss_type, beta
    self.epsilon_low, self.epsilon_high = epsilon_low, epsilon_high
    self.max_completion_length = MAX_COMPLETION
    self.importance_sampling_level = "token"
    self.top_entropy_quantile = 1.0
    self.off_policy_mask_threshold = None
    self.use_vllm = self.vllm_importance_sampling_correction = False
    self.aux_loss_enabled = self._entropy_bonus_enabled = False
    self.args = types.SimpleNamespace(delta=delta, use_bias_correction_kl=False,
                                      steps_per_generation=1)
    self.model = types.SimpleNamespace(training=True)
    self.current_gradient_accumulation_steps = 1
    self.accelerator = types.SimpleNamespace(
        num_processes=1, gather=lambda x: x, gather_for_metrics=lambda x: x,
        reduce=lambda x, reduction="sum": x)
    self._metrics = {"train": collections.defaultdict(list),
                     "eval": collections.defaultdict(list)}

  def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                         *args, **kwargs):
    return self.logp, torch.zeros_like(self.logp), None


def random_batch(seed: int, per_token_adv: bool = False, mask_fill: float = 0.7) -> dict:
  """Completion log-probs, old/ref log-probs, advantages and a mask with >= 1 token per row."""
  rng = np.random.default_rng(seed)
  logp = -rng.exponential(1.0, (B, T))                                     # [B, T]
  mask = rng.random((B, T)) < mask_fill                                    # [B, T]
  mask[np.arange(B), rng.integers(0, T, B)] = True
  adv = rng.normal(0.0, 1.0, (B, T) if per_token_adv else (B,))
  old = logp + rng.normal(0.0, 0.3, (B, T))                               # ratios ~ e^±0.3
  worst = int(np.argmin(adv if adv.ndim == 1 else adv[:, 0]))
  first = int(np.argmax(mask[worst]))
  old[worst, first] = logp[worst, first] - np.log(2.0)   # ratio 2: beyond any delta used here
  return {"logp": logp.astype(np.float32), "old": old.astype(np.float32),
          "ref": (logp + rng.normal(0.0, 0.5, (B, T))).astype(np.float32),
          "adv": adv.astype(np.float32), "mask": mask.astype(np.float32)}


def trl_loss_and_grad(batch: dict, loss_type: str, beta: float, eps_low: float,
                      eps_high: float, delta: float | None, on_policy: bool):
  """TRL's loss, d loss / d logp [B, T] and its logged metrics."""
  logp = torch.tensor(batch["logp"], dtype=torch.float64, requires_grad=True)
  host = TRLLossHost(logp, loss_type, beta, eps_low, eps_high, delta)
  mask = torch.tensor(batch["mask"], dtype=torch.float64)
  inputs = {"prompt_ids": torch.zeros((B, 2), dtype=torch.long),
            "prompt_mask": torch.ones((B, 2), dtype=torch.long),
            "completion_ids": torch.zeros((B, T), dtype=torch.long),
            "completion_mask": mask,
            "advantages": torch.tensor(batch["adv"], dtype=torch.float64),
            "num_items_in_batch": mask.sum()}
  if not on_policy:
    inputs["old_per_token_logps"] = torch.tensor(batch["old"], dtype=torch.float64)
  if beta:
    inputs["ref_per_token_logps"] = torch.tensor(batch["ref"], dtype=torch.float64)
  loss = trl_grpo.GRPOTrainer._compute_loss(host, None, inputs)
  loss.backward()
  metrics = {k: v[-1] for k, v in host._metrics["train"].items()}
  return float(loss.detach()), logp.grad.numpy(), metrics


def our_loss_and_grad(batch: dict, loss_type: str, beta: float, eps_low: float,
                      eps_high: float, delta: float | None, on_policy: bool):
  cfg = GRPOLossConfig(epsilon_low=eps_low, epsilon_high=eps_high, dual_clip_c=delta,
                       beta_kl=beta, loss_aggregation=AGGREGATION[loss_type],
                       norm_length=MAX_COMPLETION)
  old = None if on_policy else jnp.asarray(batch["old"])
  ref = jnp.asarray(batch["ref"]) if beta else None

  def loss_fn(logp):
    return grpo_loss(logp, old, ref, jnp.asarray(batch["adv"]), jnp.asarray(batch["mask"]), cfg)

  (loss, metrics), grad = jax.value_and_grad(loss_fn, has_aux=True)(jnp.asarray(batch["logp"]))
  return float(loss), np.asarray(grad), {k: float(v) for k, v in metrics.items()}


OPTIONS = [  # (beta, epsilon_low, epsilon_high, delta, on_policy)
    (0.0, 0.2, 0.2, None, True),         # the paper with mu = 1 and no KL
    (0.04, 0.2, 0.2, None, True),        # the paper: k3 KL, beta 0.04
    (0.0, 0.2, 0.2, None, False),        # off-policy ratios, symmetric clip
    (0.04, 0.2, 0.28, None, False),      # DAPO clip-higher + KL
    (0.1, 0.1, 0.3, 1.4, False),         # two-sided clipping (TRL delta = our dual_clip_c)
]


@pytest.mark.parametrize("loss_type", sorted(AGGREGATION))
@pytest.mark.parametrize("beta, eps_low, eps_high, delta, on_policy", OPTIONS)
def test_loss_and_gradient_equal_trl(loss_type, beta, eps_low, eps_high, delta, on_policy):
  batch = random_batch(seed=zlib.crc32(repr((loss_type, beta, eps_high, on_policy)).encode()))
  args = (batch, loss_type, beta, eps_low, eps_high, delta, on_policy)
  trl_loss, trl_grad, trl_metrics = trl_loss_and_grad(*args)
  loss, grad, metrics = our_loss_and_grad(*args)
  assert loss == pytest.approx(trl_loss, rel=1e-5, abs=1e-6)
  np.testing.assert_allclose(grad, trl_grad, rtol=1e-4, atol=1e-7)
  assert np.abs(trl_grad).max() > 0.0
  for name in ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"):
    assert metrics[name] == pytest.approx(trl_metrics[name], abs=1e-6), name
  if beta:
    assert metrics["kl"] == pytest.approx(trl_metrics["kl"], rel=1e-5)
  if not on_policy:   # the batch exercises the clipping it claims to
    assert trl_metrics["clip_ratio/region_mean"] > 0.0
  if delta is not None:
    assert metrics["clip_ratio/dual_mean"] > 0.0


@pytest.mark.parametrize("loss_type", sorted(AGGREGATION))
def test_per_token_advantages_equal_trl(loss_type):
  batch = random_batch(seed=7, per_token_adv=True)
  args = (batch, loss_type, 0.04, 0.2, 0.28, None, False)
  trl_loss, trl_grad, _ = trl_loss_and_grad(*args)
  loss, grad, _ = our_loss_and_grad(*args)
  assert loss == pytest.approx(trl_loss, rel=1e-5, abs=1e-6)
  np.testing.assert_allclose(grad, trl_grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "luspo"])
def test_fully_masked_rows_are_ignored_where_trl_counts_them(loss_type):
  """A documented difference: TRL's per-sequence modes average over all B rows, ours over the
  rows with a completion token (so DAPO's padding groups change nothing). On the rows that
  remain the two agree exactly."""
  batch = random_batch(seed=3)
  batch["mask"][:2] = 0.0
  args = (batch, loss_type, 0.04, 0.2, 0.28, None, False)
  trl_loss, trl_grad, _ = trl_loss_and_grad(*args)
  loss, grad, _ = our_loss_and_grad(*args)
  assert loss == pytest.approx(trl_loss * B / (B - 2), rel=1e-5)
  np.testing.assert_allclose(grad, trl_grad * B / (B - 2), rtol=1e-4, atol=1e-7)
