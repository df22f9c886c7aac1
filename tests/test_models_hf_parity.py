"""Live parity against transformers (PyTorch, float32, eager attention); skipped without torch."""
import functools

import jax
import numpy as np
import pytest

from restrl_jax import models as M

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import make_golden_fixtures as fx  # noqa: E402  (tests/ is on sys.path under pytest)

pytestmark = pytest.mark.parity
FAMILIES = ["qwen2", "llama", "qwen3"]


def _ours(config, params, tokens, mask):
  return np.asarray(jax.jit(functools.partial(M.logits, config))(params, tokens, mask))


@pytest.mark.parametrize("family", FAMILIES)
def test_load_hf_matches_transformers(family, tmp_path):
  model = fx.hf_model(family, seed=11)
  model.save_pretrained(tmp_path)
  config, params = M.load_hf(tmp_path)
  tokens, mask = fx.token_batch(model.config.vocab_size, seed=5)
  want = fx.hf_row_logits(model, tokens, mask)
  got = _ours(config, params, tokens, mask)
  np.testing.assert_allclose(got[mask], want[mask], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_hf_round_trips_through_transformers(family, tmp_path):
  config = M.ModelConfig.from_hf_config(fx.hf_config(family).to_dict())
  params = M.init_params(config, jax.random.key(3), std=0.15)
  M.save_hf(config, params, tmp_path, max_shard_size="40KB")  # several shards + index
  assert (tmp_path / "model.safetensors.index.json").is_file()
  model = transformers.AutoModelForCausalLM.from_pretrained(
      tmp_path, attn_implementation="eager", dtype=torch.float32).eval()
  tokens, mask = fx.token_batch(config.vocab_size, seed=8)
  want = fx.hf_row_logits(model, tokens, mask)
  got = _ours(config, params, tokens, mask)
  np.testing.assert_allclose(got[mask], want[mask], atol=1e-4, rtol=1e-4)
  config2, params2 = M.load_hf(tmp_path)
  assert config2 == config
  assert jax.tree.structure(params2) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
    assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
