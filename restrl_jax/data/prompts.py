"""Prompt formats of ReST-RL (docs/method.md §2, §6) and code extraction.

A prompt puts the task in the user turn and pre-fills the assistant turn with a fixed lead-in that
opens a python code block, followed by the current partial program ("state"). With a chat
template the rendered text is cut right after the pre-fill (a sentinel is appended to the
assistant content and everything from it on is dropped, so no end-of-turn token follows);
without one the prompt is `user_text + "\\n" + assistant_prefix`.

A sampled continuation is cut at the first end marker (the closing fence) and the program to run
is `state + continuation.rstrip()`. `state_token_ends` gives the token boundaries of a state as the
policy reads it (inside its prompt), where a prompt that is to continue a program may end. Templates are frozen dataclasses: pass your own (e.g. via
`dataclasses.replace(TEMPLATES["code"], user_prefix=...)`) to change any wording.
"""
from __future__ import annotations

import bisect
import dataclasses
from typing import Any, Sequence

from restrl_jax.data.problem import Problem

CODE_LEAD_IN = ("Below is a self-contained Python script that solves the problem and realizes "
                "requested functionalities:\n```python\n")
FENCE_STOPS = ("```",)
DS1000_STOPS = ("</code>", "### SOLUTION END", "### END SOLUTION", "# SOLUTION END",
                "# END SOLUTION", "END SOLUTION", "SOLUTION END")
SENTINEL = "<<<restrl-prefill-end>>>"


def _script_request(fmt: str = "") -> str:
  using = f" using {fmt}" if fmt else ""
  return (f"Please provide a self-contained Python script{using} that solves the following "
          "problem in a markdown code block.\nProblem: ")


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
  user_prefix: str              # followed directly by the task text
  assistant_prefix: str         # followed directly by the state
  stops: tuple[str, ...]        # end markers: generation stops, extraction cuts

  def user_text(self, task: str) -> str:
    return self.user_prefix + task


TEMPLATES: dict[str, PromptTemplate] = {
    "code": PromptTemplate(_script_request(), CODE_LEAD_IN, FENCE_STOPS),
    "apps_stdin": PromptTemplate(_script_request("Standard Input format"), CODE_LEAD_IN,
                                 FENCE_STOPS),
    "apps_call": PromptTemplate(_script_request("Call-Based format"), CODE_LEAD_IN, FENCE_STOPS),
    "ds1000": PromptTemplate(
        "Please directly complete the required program to solve the following problem.\n", "",
        DS1000_STOPS),
}


def template_for(problem: Problem) -> PromptTemplate:
  """APPS picks the stdin/call-based wording from its tests; DS-1000 its own; others "code"."""
  if problem.source == "apps":
    return TEMPLATES["apps_call" if problem.tests.kind == "call" else "apps_stdin"]
  return TEMPLATES.get(problem.source, TEMPLATES["code"])


def has_chat_template(tokenizer: Any) -> bool:
  return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def render_chat(user_text: str, assistant_prefix: str, tokenizer: Any = None) -> str:
  """User turn + pre-filled assistant turn, cut right after the pre-fill."""
  if not has_chat_template(tokenizer):
    return user_text + "\n" + assistant_prefix
  messages = [{"role": "user", "content": user_text},
              {"role": "assistant", "content": assistant_prefix + SENTINEL}]
  rendered = tokenizer.apply_chat_template(messages, tokenize=False)
  cut = rendered.find(SENTINEL)
  if cut < 0 or not rendered[:cut].endswith(assistant_prefix):
    raise ValueError("the tokenizer's chat template does not keep the assistant message verbatim, "
                     "so the pre-filled prompt cannot be cut after it")
  return rendered[:cut]


def build_prompt(problem: Problem, state: str | None = None, tokenizer: Any = None,
                 template: PromptTemplate | None = None) -> str:
  """The prompt text for `problem` continued from `state` (default: its starter code)."""
  template = template or template_for(problem)
  state = problem.starter_code if state is None else state
  return render_chat(template.user_text(problem.prompt), template.assistant_prefix + state,
                     tokenizer)


def token_ends(tokenizer: Any, text: str) -> list[int]:
  """The character offsets in `text` at which a token of `tokenizer(text)` ends and the next one
  starts, ascending (len(text) last).

  Needs a fast tokenizer (offset mapping). Byte-level pieces of one character share its span, so
  only a character's last piece ends a token there; added special tokens (empty spans) are
  skipped. Offsets that leave a gap between tokens (trimmed offsets) are refused: they would not
  say where a token ends.
  """
  spans = [(a, b) for a, b in tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
           if b > a]
  ends = []
  for (_, end), (next_start, _) in zip(spans, spans[1:] + [(len(text), len(text))]):
    if next_start > end:
      raise ValueError(f"the tokenizer's offsets leave text[{end}:{next_start}] in no token; "
                       "token ends need untrimmed offsets")
    if next_start == end:
      ends.append(end)
  return ends


def state_token_ends(problem: Problem, state: str, tokenizer: Any,
                     template: PromptTemplate | None = None) -> list[int]:
  """The offsets in `state` (> 0) at which a token of the prompt `build_prompt(problem, state,
  tokenizer, template)` ends: the boundaries of the state as the policy reads it, after the
  template's pre-fill."""
  prompt = build_prompt(problem, state, tokenizer, template)
  start = len(prompt) - len(state)
  return [end - start for end in token_ends(tokenizer, prompt) if end > start]


def first_token_end_at_or_after(token_ends: Sequence[int], position: int) -> int:
  """The smallest of the ascending `token_ends` that is >= `position`."""
  i = bisect.bisect_left(token_ends, position)
  if i == len(token_ends):
    raise ValueError(f"no token ends at or after offset {position} (last: "
                     f"{token_ends[-1] if len(token_ends) else None}); token_ends must cover the "
                     "complete state")
  return int(token_ends[i])


def first_stop(text: str, stops: Sequence[str] = FENCE_STOPS) -> tuple[int, str] | None:
  """(position, marker) of the earliest end marker in `text`, or None."""
  hits = [(text.find(s), s) for s in stops if s and s in text]
  return min(hits) if hits else None


def extract_code(sample: str, stops: Sequence[str] = FENCE_STOPS) -> str:
  """`sample` up to (not including) the first end marker."""
  hit = first_stop(sample, stops)
  return sample if hit is None else sample[:hit[0]]


def assemble_program(state: str, sample: str, stops: Sequence[str] = FENCE_STOPS) -> str:
  """The program to execute: `state + extracted.rstrip()`."""
  return state + extract_code(sample, stops).rstrip()


def value_model_input(question: str, state: str) -> str:
  """Value-model text (no chat template), docs/method.md §6."""
  return "\n<prompt>\n" + question + "\n<answer>\n" + state + "\n"
