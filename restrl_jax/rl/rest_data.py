"""ReST-GRPO training-prompt assembly (docs/method.md §4.2; the paper's σ0, r0, α, β, Eq. 3).

Host-side numpy. From the N sampled programs of each problem (text WITHOUT the initial state, with
their execution rewards) build the GRPO prompt set:

* mode "sample" (ReST-GRPO, the default): drop problems whose population reward std (ddof=0) is
  below σ0; keep the original prompt (state = init_state) of every other problem; when its best
  reward (first max on ties) is >= r0, add m partial states P_k = init_state + the first k lines
  of the best program, k ~ q(k) ∝ α^(k-1) on 1..L drawn with replacement, m = ceil(β·L) for a
  float β in (0, 1], m = β for an int β.
* mode "all" (the original `--extract_all_lines`): same filters, every prefix P_1..P_L once.
* mode "basic" (naive GRPO data; the original's β <= 0): every problem's original prompt, no filter.

Where a partial state ends (`state_end`). Line k of the best program ends at the end of its text;
the paper's P_k ("newline") adds the line's "\\n". A prompt must end on a token boundary of the
program as the policy reads it, or the policy starts mid-token: a BPE tokenizer may merge a line's
last characters with its newline ("):\\n" is one token of the shipped tokenizer) or a newline with
the next line's indentation ("\\n    " is one token of other tokenizers). With "token" (the
default) P_k is the shortest prefix of the complete state (init_state + every line, each ending
in "\\n") that holds line k's text and ends where a token of that complete state ends, inside its
prompt: after the newline for the first kind of tokenizer, before it for the second. The caller
supplies those token ends (`token_ends_of`, e.g. `data.prompts.state_token_ends` with the
policy's tokenizer); this module imports no tokenizer. The program is state + completion
either way.

Unlike the original (Python `random`, unseeded) the draws come from a numpy Generator, so a seed
reproduces the data; `dedup=True` drops repeated prefixes (the original keeps them).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence

import numpy as np

from restrl_jax.data.prompts import first_token_end_at_or_after

MODES = ("sample", "all", "basic")
KINDS = ("original", "partial")
STATE_ENDS = ("token", "newline")
# (problem_id, complete state) -> the offsets in it at which a token of its prompt ends, ascending
TokenEndsOf = Callable[[str, str], Sequence[int]]


@dataclasses.dataclass(frozen=True)
class ProblemSamples:
  """The N sampled programs of one problem (without init_state) and their rewards."""
  problem_id: str
  init_state: str
  samples: tuple[str, ...]
  rewards: tuple[float, ...]

  def __post_init__(self):
    if len(self.samples) != len(self.rewards):
      raise ValueError(f"problem {self.problem_id!r}: {len(self.samples)} samples but "
                       f"{len(self.rewards)} rewards")
    if not all(math.isfinite(r) for r in self.rewards):
      raise ValueError(f"problem {self.problem_id!r}: rewards must be finite, got {self.rewards}")


@dataclasses.dataclass(frozen=True)
class RestRow:
  """One GRPO training prompt: continue `problem_id` from `state`."""
  problem_id: str
  state: str             # init_state (original) or init_state + first k lines (partial)
  kind: str              # "original" | "partial"
  prefix_lines: int      # k; 0 for the original prompt


@dataclasses.dataclass(frozen=True)
class RestDataConfig:
  sigma0: float = 0.05           # std threshold (population std, ddof=0)
  r0: float = 0.9                # best-reward threshold for partial states
  alpha: float = 0.95            # geometric decay of the cut-point pmf
  beta: float | int = 0.5        # float: ratio (m = ceil(β·L)); int: fixed count m = β
  mode: str = "sample"           # "sample" | "all" | "basic"
  dedup: bool = False            # drop repeated partial states of a problem
  state_end: str = "token"       # "token" (at a token end) | "newline" (the paper's P_k); see
                                 # the module docstring

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"mode={self.mode!r}; choose from {MODES}")
    if self.state_end not in STATE_ENDS:
      raise ValueError(f"state_end={self.state_end!r}; choose from {STATE_ENDS}")
    if not 0.0 < self.alpha <= 1.0:
      raise ValueError(f"alpha={self.alpha} must be in (0, 1]")
    if self.mode == "sample":
      _check_beta(self.beta)


def count_or_ratio(beta: float | int) -> float | int:
  """`beta` as RestDataConfig takes it: an integral float > 1 (a config's `4.0`) is the count 4;
  other values unchanged."""
  if isinstance(beta, float) and beta > 1.0 and beta.is_integer():
    return int(beta)
  return beta


def _check_beta(beta: float | int) -> None:
  if isinstance(beta, bool) or not isinstance(beta, (int, float)):
    raise ValueError(f"beta={beta!r} must be an int (count) or a float (ratio)")
  if isinstance(beta, int) and beta < 1:
    raise ValueError(f"beta={beta} as a count must be >= 1 (use mode='basic' for no partials)")
  if isinstance(beta, float) and not 0.0 < beta <= 1.0:
    raise ValueError(f"beta={beta} as a ratio must be in (0, 1]")


def mode_from_flags(n_sample: float | int, extract_all_lines: bool) -> str:
  """The original CLI's choice: `--extract_all_lines` wins, then n_sample <= 0 means basic."""
  if extract_all_lines:
    return "all"
  return "basic" if n_sample <= 0 else "sample"


def prefix_pmf(num_lines: int, alpha: float) -> np.ndarray:
  """q(k) = α^(k-1) / Σ_j α^(j-1) for k = 1..L."""  # [L]
  if num_lines < 1:
    raise ValueError(f"num_lines={num_lines} must be >= 1")
  weights = alpha ** np.arange(num_lines, dtype=np.float64)
  return weights / weights.sum()


def num_partial_draws(num_lines: int, beta: float | int) -> int:
  """m = β for an int β, else ceil(β·L) (float arithmetic exactly as the original)."""
  _check_beta(beta)
  return beta if isinstance(beta, int) else math.ceil(num_lines * beta)


def best_sample(rewards: Sequence[float]) -> int:
  """Index of the highest reward, the first one on ties."""
  return int(np.argmax(np.asarray(rewards, dtype=np.float64)))


def complete_state(init_state: str, program: str) -> str:
  """init_state + every line of `program.rstrip()`, each ending in "\\n" (the paper's P_L): the
  text whose tokenization places the "token" cuts."""
  return init_state + program.rstrip() + "\n"


def line_text_ends(init_state: str, program: str) -> list[int]:
  """For k = 1..L, the offset in `complete_state` at which line k's text ends (its "\\n" next)."""
  text = complete_state(init_state, program)
  return [i for i in range(len(init_state), len(text)) if text[i] == "\n"]


def prefix_states(init_state: str, program: str, state_end: str = "token",
                  token_ends: Sequence[int] | None = None) -> list[str]:
  """P_1..P_L of `program` after `init_state`: with "newline" init_state + the first k lines,
  each ending in "\\n"; with "token" the shortest prefix of `complete_state(init_state, program)`
  that holds line k's text and ends at one of `token_ends` (ascending offsets in the complete
  state at which a token of it ends, as the policy reads it; see the module docstring)."""
  if state_end not in STATE_ENDS:
    raise ValueError(f"state_end={state_end!r}; choose from {STATE_ENDS}")
  text = complete_state(init_state, program)
  line_ends = line_text_ends(init_state, program)
  if state_end == "newline":
    return [text[:end + 1] for end in line_ends]
  if token_ends is None:
    raise ValueError("state_end='token' needs the token ends of the complete state")
  return [text[:first_token_end_at_or_after(token_ends, end)] for end in line_ends]


def passes_filter(rewards: Sequence[float], sigma0: float) -> bool:
  """Keep a problem iff its population reward std is >= σ0 (an empty problem is dropped)."""
  return len(rewards) > 0 and float(np.std(np.asarray(rewards, dtype=np.float64))) >= sigma0


def _original(p: ProblemSamples) -> RestRow:
  return RestRow(p.problem_id, p.init_state, "original", 0)


def _partial_ks(num_lines: int, cfg: RestDataConfig, rng: np.random.Generator) -> list[int]:
  if cfg.mode == "all":
    return list(range(1, num_lines + 1))
  m = num_partial_draws(num_lines, cfg.beta)
  ks = rng.choice(np.arange(1, num_lines + 1), size=m, replace=True,
                  p=prefix_pmf(num_lines, cfg.alpha))
  ks = [int(k) for k in ks]
  return list(dict.fromkeys(ks)) if cfg.dedup else ks


def problem_rows(p: ProblemSamples, cfg: RestDataConfig, rng: np.random.Generator,
                 token_ends_of: TokenEndsOf | None = None) -> list[RestRow]:
  """The rows contributed by one problem (possibly none); `token_ends_of` is needed when
  `cfg.state_end` is "token" and the problem gets partial states."""
  if cfg.mode == "basic":
    return [_original(p)]
  if not passes_filter(p.rewards, cfg.sigma0):
    return []
  best = best_sample(p.rewards)
  if p.rewards[best] < cfg.r0:
    return [_original(p)]
  program = p.samples[best]
  token_ends = None
  if cfg.state_end == "token":
    if token_ends_of is None:
      raise ValueError("state_end='token' needs token_ends_of (the policy's token boundaries)")
    token_ends = token_ends_of(p.problem_id, complete_state(p.init_state, program))
  states = prefix_states(p.init_state, program, cfg.state_end, token_ends)
  ks = _partial_ks(len(states), cfg, rng)
  return [_original(p)] + [RestRow(p.problem_id, states[k - 1], "partial", k) for k in ks]


def assemble(problems: Iterable[ProblemSamples], cfg: RestDataConfig = RestDataConfig(),
             rng: np.random.Generator | int | None = 0,
             token_ends_of: TokenEndsOf | None = None) -> list[RestRow]:
  """All training rows, problem by problem in input order (the trainer shuffles them)."""
  rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
  rows: list[RestRow] = []
  for p in problems:
    rows.extend(problem_rows(p, cfg, rng, token_ends_of))
  return rows


def summarize(rows: Sequence[RestRow]) -> dict[str, float]:
  """Counts for logging: rows, originals, partials, distinct problems, mean prefix length."""
  partial = [r.prefix_lines for r in rows if r.kind == "partial"]
  return {"rows": len(rows), "original": len(rows) - len(partial), "partial": len(partial),
          "problems": len({r.problem_id for r in rows}),
          "mean_prefix_lines": float(np.mean(partial)) if partial else 0.0}
