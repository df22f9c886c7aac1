"""Host-side text handling: detokenising completions and cutting them at stop strings.

Stop strings are matched on text, so they are found whatever tokens they span, including a stop
string that starts in the middle of a token. The cut rule (documented for callers):
- the returned text ends right before the first occurrence of any stop string (earliest start;
  the stop string is not returned, as in vLLM);
- the returned tokens are the shortest prefix of the generated tokens whose text covers the kept
  text. When the stop string starts mid-token, that token (holding the end of the kept text and
  the start of the stop string) is the last kept token, and its text is truncated: `text` is then
  a strict prefix of `decode(tokens)`. When the stop string starts on a token boundary,
  `text == decode(tokens)`.

Completions are detokenised with a few preceding prompt tokens as context and the context's text
stripped again, so tokenizers that drop a leading space at the start of a sequence (SentencePiece)
still give the exact continuation text; if the context's text is not a prefix, the tokens are
decoded alone.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence

CONTEXT_TOKENS = 4


class Tokenizer(Protocol):
  def encode(self, text: str) -> list[int]: ...
  def decode(self, ids: list[int]) -> str: ...


class StopCut(NamedTuple):
  num_tokens: int  # generated tokens kept
  text: str        # kept text (ends right before the stop string)


def detokenize(tokenizer: Tokenizer, tokens: Sequence[int], context: Sequence[int] = ()) -> str:
  """Text of `tokens` as a continuation of `context` (the last prompt tokens)."""
  tokens = [int(t) for t in tokens]
  if not context:
    return tokenizer.decode(tokens)
  context = [int(t) for t in context]
  prefix = tokenizer.decode(context)
  full = tokenizer.decode(context + tokens)
  if full.startswith(prefix):
    return full[len(prefix):]
  return tokenizer.decode(tokens)


def find_first_stop(text: str, stop_strings: Sequence[str]) -> int:
  """Index of the earliest occurrence of any stop string in `text`, -1 if none."""
  hits = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
  return min(hits) if hits else -1


def tokens_covering(tokenizer: Tokenizer, tokens: Sequence[int], num_chars: int,
                    context: Sequence[int] = ()) -> int:
  """Fewest leading tokens whose text is at least `num_chars` long (binary search)."""
  lo, hi = 0, len(tokens)  # invariant: answer in [lo, hi]
  while lo < hi:
    mid = (lo + hi) // 2
    if len(detokenize(tokenizer, tokens[:mid], context)) >= num_chars:
      hi = mid
    else:
      lo = mid + 1
  return lo


def cut_at_stop(tokenizer: Tokenizer, tokens: Sequence[int], stop_strings: Sequence[str],
                context: Sequence[int] = (), text: str | None = None) -> StopCut | None:
  """The stop-string cut of a completion (see module docstring), or None if no stop string."""
  if not stop_strings:
    return None
  if text is None:
    text = detokenize(tokenizer, tokens, context)
  start = find_first_stop(text, stop_strings)
  if start < 0:
    return None
  return StopCut(tokens_covering(tokenizer, tokens, start, context), text[:start])


class StopWatcher:
  """Per-call bookkeeping of which rows hit a stop string (host side, between decode chunks).

  `update` looks at every row not yet settled; a row is settled once a stop string was found
  (its cut is kept) or once the device finished it and its final text held no stop string.
  """

  def __init__(self, tokenizer: Tokenizer, stop_strings: Sequence[str],
               contexts: Sequence[Sequence[int]], eos_ids: Sequence[int]):
    self.tokenizer = tokenizer
    self.stop_strings = tuple(stop_strings)
    self.contexts = [list(c) for c in contexts]
    self.eos_ids = frozenset(int(t) for t in eos_ids)
    self.cuts: dict[int, StopCut] = {}
    self.settled: set[int] = set()

  def text_tokens(self, row_tokens: Sequence[int]) -> list[int]:
    """The tokens that make up the text: a final end-of-sequence token is dropped."""
    toks = [int(t) for t in row_tokens]
    return toks[:-1] if toks and toks[-1] in self.eos_ids else toks

  def update(self, tokens, lengths, device_done) -> list[int]:
    """Check unsettled rows of tokens [B, N]; return the rows that just hit a stop string."""
    hits = []
    for row in range(len(self.contexts)):
      if row in self.settled:
        continue
      toks = self.text_tokens(tokens[row, :lengths[row]])
      cut = cut_at_stop(self.tokenizer, toks, self.stop_strings, self.contexts[row])
      if cut is not None:
        self.cuts[row] = cut
        hits.append(row)
      if cut is not None or device_done[row]:
        self.settled.add(row)
    return hits
