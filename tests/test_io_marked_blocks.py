"""io_utils.replace_marked_block: the one way generated tables go into the docs."""
import pytest

from restrl_jax import io_utils

B, E = "<!-- t:begin -->", "<!-- t:end -->"


def test_the_block_between_the_markers_is_replaced_and_the_rest_kept():
  text = f"head\n{B}\nold 1\nold 2\n{E}\ntail {B[:4]}\n"
  assert io_utils.replace_marked_block(text, B, E, "new\n") == f"head\n{B}\nnew\n{E}\ntail <!--\n"


def test_a_missing_block_is_appended_or_named():
  appended = io_utils.replace_marked_block("doc\n\n", B, E, "x\n", append=True)
  assert appended == f"doc\n\n{B}\nx\n{E}\n"
  with pytest.raises(ValueError, match="no <!-- t:begin --> ... <!-- t:end --> block"):
    io_utils.replace_marked_block(f"doc {B} without its end", B, E, "x\n")
