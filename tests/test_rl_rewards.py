"""GRPO reward shaping (restrl_jax/rl/rewards.py) against docs/method.md §3.1, by hand."""
import pytest

from restrl_jax.data.prompts import DS1000_STOPS
from restrl_jax.rl.rewards import ShapedCompletion, Shaping, shape_completion, total_reward

STATE = "def f(x):\n"


def test_closed_block_without_trailing_text_gets_the_symbol_reward():
  out = shape_completion(STATE, "  return x\n```")
  assert out == ShapedCompletion(STATE + "  return x\n", pytest.approx(1e-3), True)


def test_trailing_text_is_penalised_per_character():
  completion = "  return x\n```\nThis function returns x."     # trailing text after the marker
  out = shape_completion(STATE, completion)
  assert out.program == STATE + "  return x\n"
  assert len("\nThis function returns x.") == 25
  assert out.bonus == pytest.approx(1e-3 - 1e-6 * 25, abs=1e-15)
  assert out.closed


def test_only_the_first_marker_is_stripped_from_the_trailing_text():
  out = shape_completion(STATE, "  return x\n``````")
  assert out.program == STATE + "  return x\n"
  assert out.bonus == pytest.approx(1e-3 - 3e-6, abs=1e-15)


def test_no_stop_string_means_no_bonus_and_the_whole_completion_runs():
  out = shape_completion(STATE, "  return x  # still going")
  assert out == ShapedCompletion(STATE + "  return x  # still going", 0.0, False)
  assert total_reward(out, 0.5) == 0.5


def test_custom_weights_and_total():
  out = shape_completion("", "print(1)\n```ab", symbol_reward=0.1, trailing_penalty=0.01)
  assert out.bonus == pytest.approx(0.1 - 0.02)
  assert total_reward(out, 1.0) == pytest.approx(1.08)


def test_earliest_of_several_ds1000_markers_cuts():
  completion = "x = 1\n</code>\nEND SOLUTION\nmore"
  out = shape_completion("import numpy as np\n", completion, DS1000_STOPS)
  assert out.program == "import numpy as np\nx = 1\n"
  trailing = "\nEND SOLUTION\nmore"                        # after stripping "</code>"
  assert out.bonus == pytest.approx(1e-3 - 1e-6 * len(trailing), abs=1e-15)


def test_longer_marker_at_the_cut_is_stripped_whole():
  out = shape_completion("", "x = 1\n### END SOLUTION", DS1000_STOPS)
  assert out.program == "x = 1\n"
  assert out.bonus == pytest.approx(1e-3, abs=1e-15)      # nothing left after the marker


def test_empty_stop_list_is_rejected():
  with pytest.raises(ValueError, match="stops"):
    shape_completion("", "x", ())
  with pytest.raises(ValueError, match="stops"):
    shape_completion("", "x", ("```", ""))


def test_shaping_as_the_rollout_extraction():
  plain = Shaping()                                        # no stop strings: the text is whole
  assert plain(STATE, "  return x\n```\nok", ("```",), "eos") == shape_completion(
      STATE, "  return x\n```\nok")
  # the sampler stopped at the marker and removed it: the block counts as closed, nothing trails
  fence = Shaping(symbol_reward=0.1, trailing_penalty=0.01, stopped_at_marker=True)
  assert fence(STATE, "  return x\n", ("```",), "stop") == ShapedCompletion(
      STATE + "  return x\n", pytest.approx(0.1), True)
  assert fence(STATE, "  return x\n", ("```",), "length") == ShapedCompletion(
      STATE + "  return x\n", 0.0, False)
  assert fence("", "x = 1\n", DS1000_STOPS, "stop").program == "x = 1\n"
