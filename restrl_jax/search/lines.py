"""Host-side table of lines: action string <-> line id, and node states rebuilt from paths.

The tree (`tree.py`) stores only integer line ids; the text lives here. An action (docs/method.md §5.1) is
the first line of a sampled completion plus "\\n", or, when the completion has a single remaining
line, that whole line plus "\\n" and the child is terminal. Actions are keyed by
(line, is_terminal): the same text as a terminal and as a non-terminal step are different
children, so equal keys always get equal ids (what `add_children` requires).

A node's state is its tree's root state (the problem's starter code) followed by the lines on its
root path: `table.state(root_state, path.line_ids[b], path.length[b])`.

Token boundaries (`sampling_state`, `continuation`). A node state ends in "\\n", but the
policy must continue from a token boundary of the program as it reads it, or it starts
mid-token: a BPE tokenizer may merge a line's last characters with its newline ("):\\n" is one
token of the shipped tokenizer) or a newline with the next line's indentation ("\\n    " in
other tokenizers). So the policy continues a non-root node from `sampling_state`: the node's
state cut at the first token end at or after its last line's text, in the tokenization (inside
its prompt) of the sampled program that created the node; the root continues from the starter
code, the trained prompt's boundary. `continuation` recovers the text after the node's state, or
None when a sample rewrote the state's last line.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from restrl_jax.data.prompts import first_token_end_at_or_after


class Action(NamedTuple):
  """The step one sampled completion makes from its node (docs/method.md §5.1)."""
  line: str        # ends with "\n"
  terminal: bool   # the completion had a single remaining line: the child's program is complete


def action_of(continuation: str) -> Action:
  """The action of an extracted continuation (the program text after the node's state).

  The continuation is rstripped first (as the released code's extraction does); with no newline left it
  is a terminal step, otherwise its first line is the step.
  """
  text = continuation.rstrip()
  if "\n" not in text:
    return Action(text + "\n", True)
  return Action(text.split("\n", 1)[0] + "\n", False)


def sampling_state(state: str, program: str, token_ends: Sequence[int]) -> str:
  """The text the policy continues a non-root node's `state` (ending in "\\n") from: the shortest
  prefix of `program`, a sampled program that continues `state` past its last line, that holds
  that line's text and ends at one of `token_ends` (ascending offsets in `program` at which a
  token of its prompt ends)."""
  if not program.startswith(state) or len(program) <= len(state):
    raise ValueError("sampling_state needs a program that continues the state past its last line")
  return program[:first_token_end_at_or_after(token_ends, len(state) - 1)]


def continuation(program: str, state: str) -> str | None:
  """The text of `program` after `state`; "" if the program stopped inside the state's trailing
  whitespace; None if it does not continue the state (it changed the state's last line)."""
  if program.startswith(state):
    return program[len(state):]
  if state.startswith(program) and not state[len(program):].strip():
    return ""
  return None


class LineTable:
  """Interns actions; ids are dense 0..len-1 in first-seen order (mutable, host only)."""

  def __init__(self):
    self._ids: dict[tuple[str, bool], int] = {}
    self._lines: list[str] = []
    self._terminal: list[bool] = []

  def __len__(self) -> int:
    return len(self._lines)

  def intern(self, action: Action) -> int:
    key = (action.line, bool(action.terminal))
    found = self._ids.get(key)
    if found is None:
      found = self._ids[key] = len(self._lines)
      self._lines.append(action.line)
      self._terminal.append(bool(action.terminal))
    return found

  def intern_many(self, actions: Sequence[Action]) -> np.ndarray:
    """Ids of `actions`.  # [len(actions)] int32"""
    return np.fromiter((self.intern(a) for a in actions), np.int32, len(actions))

  def line(self, line_id: int) -> str:
    if not 0 <= line_id < len(self._lines):
      raise KeyError(f"LineTable: unknown line id {line_id} (table holds {len(self)})")
    return self._lines[line_id]

  def is_terminal(self, line_id: int) -> bool:
    self.line(line_id)
    return self._terminal[line_id]

  def state(self, root_state: str, line_ids: Sequence[int] | np.ndarray, length: int) -> str:
    """Root state + the lines of path entries 1..length-1 (entry 0 is the root itself)."""
    if length < 1:
      raise ValueError(f"LineTable.state: a path holds at least the root, got length {length}")
    if length > len(line_ids):
      raise ValueError(f"LineTable.state: path length {length} exceeds the {len(line_ids)} "
                       "padded entries (call search.path with a larger max_depth)")
    return root_state + "".join(self._lines[int(i)] for i in line_ids[1:length])
