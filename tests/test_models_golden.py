"""Golden fixtures (written by tests/make_golden_fixtures.py with transformers): load_hf + our
forward reproduce the PyTorch logits at every real position of a left-padded batch. No torch."""
import functools
from pathlib import Path

import jax
import numpy as np
import pytest

from restrl_jax import models as M

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("family", ["qwen2", "llama", "qwen3"])
def test_golden_logits(family):
  config, params = M.load_hf(FIXTURES / family)
  assert config.family == family
  expected = np.load(FIXTURES / family / "expected.npz")
  tokens, mask = expected["tokens"], expected["mask"]
  got = np.asarray(jax.jit(functools.partial(M.logits, config))(params, tokens, mask))
  np.testing.assert_allclose(got[mask], expected["logits"][mask], atol=1e-4, rtol=1e-4)
  # the fixture is informative: logits vary strongly across the vocabulary
  assert expected["logits"][mask].std() > 0.1


def test_golden_fixture_features():
  """The three fixtures cover the features the parity claim is about."""
  configs = {f: M.read_hf_config(FIXTURES / f) for f in ("qwen2", "llama", "qwen3")}
  assert configs["qwen2"].attention_bias and configs["qwen2"].num_kv_heads < configs["qwen2"].num_heads
  assert configs["llama"].rope_type == "llama3"
  assert configs["qwen3"].qk_norm and configs["qwen3"].tie_word_embeddings
  assert configs["qwen3"].head_dim * configs["qwen3"].num_heads != configs["qwen3"].hidden_size
  total = sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file())
  assert total < 1_000_000
