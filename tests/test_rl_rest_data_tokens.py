"""ReST partial states cut at token ends of real tokenizers (rl/rest_data.py `state_end="token"`,
data/prompts.py `token_ends` / `state_token_ends`, rl/rounds.py `prompt_token_ends_of`)."""
from pathlib import Path

import pytest
import tokenizers
from tokenizers import Regex, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from restrl_jax.data import prompts
from restrl_jax.data.problem import Problem
from restrl_jax.data.registry import load_problems
from restrl_jax.execution import spec
from restrl_jax.rl import rest_data as rd
from restrl_jax.rl.rounds import prompt_token_ends_of
from restrl_jax.tokenizer import load_tokenizer

DEMO_POLICY = Path(__file__).resolve().parents[1] / "restrl_jax" / "assets" / "demo_policy"
PROGRAM = "def f(xs):\n    ys = []\n    return ys"


@pytest.fixture(scope="module")
def shipped():
  return load_tokenizer(DEMO_POLICY)


def _problem(starter=""):
  tests = spec.TestSuite(kind="stdio", inputs=("1\n",), outputs=("2\n",))
  return Problem(id="synthetic/x", source="synthetic", prompt="Add one.", starter_code=starter,
                 tests=tests)


def indent_merging_tokenizer():
  """A tokenizer whose tokens are a newline with the next line's indentation, a run of other
  spaces, or a run of other characters (no chat template)."""
  tok = tokenizers.Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
  tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\n *| +|[^ \n]+"), behavior="isolated")
  return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def _states(problem, program, tokenizer):
  full = rd.complete_state(problem.starter_code, program)
  ends = prompts.state_token_ends(problem, full, tokenizer)
  return rd.prefix_states(problem.starter_code, program, "token", ends)


def test_shipped_tokenizer_cut_keeps_the_newline_it_merges_with_the_line(shipped):
  assert prompts.has_chat_template(shipped)
  assert _states(_problem(), PROGRAM, shipped) == [
      "def f(xs):\n", "def f(xs):\n    ys = []\n", "def f(xs):\n    ys = []\n    return ys"]


def test_indent_merging_tokenizer_cut_leaves_the_newline_to_the_completion():
  tokenizer = indent_merging_tokenizer()
  assert not prompts.has_chat_template(tokenizer)
  assert _states(_problem(), PROGRAM, tokenizer) == [
      "def f(xs):", "def f(xs):\n    ys = []", "def f(xs):\n    ys = []\n    return ys"]


def test_every_partial_state_is_a_token_prefix_of_the_full_program_in_its_prompt(shipped):
  """On the synthetic suite's reference programs, through the real chat template: the prompt of
  every P_k tokenizes to a prefix of the prompt of the complete program (the text-end cut does
  not, mostly)."""
  problems = load_problems("synthetic", None, split="train", limit=60)
  checked = mid_token_text_ends = 0
  for problem in problems:
    program = problem.solutions[0][len(problem.starter_code):]
    full = rd.complete_state(problem.starter_code, program)
    full_ids = shipped.encode(prompts.build_prompt(problem, full, shipped))
    for state, text_end in zip(_states(problem, program, shipped),
                               rd.line_text_ends(problem.starter_code, program)):
      ids = shipped.encode(prompts.build_prompt(problem, state, shipped))
      assert full_ids[:len(ids)] == ids, state
      cut_at_text = shipped.encode(prompts.build_prompt(problem, full[:text_end], shipped))
      mid_token_text_ends += full_ids[:len(cut_at_text)] != cut_at_text
      checked += 1
  assert checked > 300 and mid_token_text_ends > checked // 2


def test_state_token_ends_are_offsets_in_the_state_not_the_prompt(shipped):
  problem = _problem(starter="def f(xs):\n")
  full = rd.complete_state(problem.starter_code, "    return xs")
  ends = prompts.state_token_ends(problem, full, shipped)
  assert ends[-1] == len(full) and ends[0] > 0
  assert prompt_token_ends_of([problem], shipped)(problem.id, full) == ends


class _Offsets:
  """A stand-in tokenizer that returns fixed offsets."""

  def __init__(self, offsets):
    self.offsets = offsets

  def __call__(self, text, return_offsets_mapping):
    assert return_offsets_mapping
    return {"offset_mapping": self.offsets}


def test_token_ends_skip_pieces_of_one_character_and_refuse_gaps(shipped):
  # byte-level pieces: "a" + first byte of the emoji, then its other bytes (spans overlap)
  assert prompts.token_ends(_Offsets([(0, 0), (0, 2), (1, 2), (2, 3)]), "a😀b") == [2, 3]
  with pytest.raises(ValueError, match="untrimmed offsets"):
    prompts.token_ends(_Offsets([(0, 1), (2, 3)]), "a b")
  text = "x = 'é😀'\n"
  ends = prompts.token_ends(shipped, text)
  assert ends[-1] == len(text) and ends == sorted(set(ends))
  for end in ends:          # a prefix of the token ids decodes to the text up to each end
    assert any(shipped.decode(shipped.encode(text)[:i]) == text[:end]
               for i in range(len(shipped.encode(text)) + 1))
