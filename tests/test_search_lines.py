"""Where MCTS continues a node (restrl_jax/search/lines.py `sampling_state`, `continuation`)."""
from pathlib import Path

import pytest

from restrl_jax.data.prompts import build_prompt, state_token_ends
from restrl_jax.data.registry import load_problems
from restrl_jax.search.lines import continuation, sampling_state
from restrl_jax.tokenizer import load_tokenizer

DEMO_POLICY = Path(__file__).resolve().parents[1] / "restrl_jax" / "assets" / "demo_policy"


def test_search_prompts_continue_states_at_a_token_end_of_the_program_that_made_them():
  state = "def f(xs):\n    ys = []\n"               # a node: the root "def f(xs):\n" + one line
  program = state + "    return ys"
  # token ends of `program` (the shipped tokenizer's: " []\n" one token) ...
  line_end_merged = [3, 5, 8, 11, 14, 16, 17, 19, 23, 26, 33, 35, 36]
  assert sampling_state(state, program, line_end_merged) == state
  # ... and of a tokenizer that merges "\n" with the next line's indentation
  indent_merged = [3, 5, 8, 10, 15, 17, 19, 22, 27, 33, 36]
  assert sampling_state(state, program, indent_merged) == state[:-1]
  with pytest.raises(ValueError, match="continues the state"):
    sampling_state(state, state, line_end_merged)
  state = "s = input()\nfor c in s:\n"
  assert continuation(state + "    print(c)", state) == "    print(c)"
  assert continuation(state[:-1], state) == ""           # stopped at the boundary
  assert continuation(state[:-1] + " pass", state) is None  # rewrote the state's last line


def test_search_sampling_states_are_token_prefixes_of_their_programs_with_the_shipped_tokenizer():
  tok = load_tokenizer(DEMO_POLICY)
  kept_newline = checked = 0
  for problem in load_problems("synthetic", None, split="train", limit=20):
    program = problem.solutions[0].rstrip()
    ends = state_token_ends(problem, program, tok)
    full_ids = tok.encode(build_prompt(problem, program, tok))
    lines = program[len(problem.starter_code):].split("\n")
    for k in range(1, len(lines)):                   # every non-terminal node on its path
      state = problem.starter_code + "\n".join(lines[:k]) + "\n"
      cut = sampling_state(state, program, ends)
      ids = tok.encode(build_prompt(problem, cut, tok))
      assert full_ids[:len(ids)] == ids, cut
      kept_newline += cut == state
      checked += 1
  assert checked > 50 and kept_newline > checked // 2
