"""Turns a composition of ops into a problem statement and a reference program.

Two code styles:
  pipeline  one statement (or one small block) per op, each writing a new variable;
  loop      runs of element-wise ops (filters, maps) and a final accumulating reduction are fused
            into one `for` loop with nested `if`s, so no line corresponds to one sentence.
Two phrasings:
  steps     one imperative sentence per op, in code order;
  nested    one noun phrase with the ops nested inside each other, i.e. in the reverse of the
            code's order ("the sum of the squares of the even numbers in xs").
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from restrl_jax.data.synthetic_ops import ELEM_NOUN, ELEM_NOUN_1, ELEM_VARS, Op

STYLES = ("pipeline", "loop")
PHRASINGS = ("steps", "nested")
INDENT = "    "
SOURCE_VAR = {"ints": "xs", "str": "s", "int": "n"}
PARSE = {
    "line": ("xs = list(map(int, input().split()))",),
    "counted": ("n = int(input())", "xs = list(map(int, input().split()))"),
    "text": ("s = input()",),
    "sentence": ("s = input()",),
    "int": ("n = int(input())",),
}
STDIO_INTRO = {
    "line": "The input is one line of space-separated integers.",
    "counted": "The first line holds n, the second line holds n space-separated integers.",
    "text": "The input is one line of text.",
    "sentence": "The input is one line of words separated by single spaces.",
    "int": "The input is one integer n.",
}
CALL_INTRO = {
    "args": "Write a function solve(xs) that takes a list of integers xs.",
    "text": "Write a function solve(s) that takes a string s.",
    "sentence": "Write a function solve(s) that takes a string s of words separated by spaces.",
    "int": "Write a function solve(n) that takes an integer n.",
}
STDIO_SOURCE_NOUN = {"ints": "the given numbers", "str": "the given text", "int": "n"}


@dataclasses.dataclass(frozen=True)
class Step:
  op: Op
  params: tuple[tuple[str, Any], ...] = ()

  @property
  def p(self) -> dict[str, Any]:
    return dict(self.params)


@dataclasses.dataclass(frozen=True)
class Composition:
  io: str                        # "stdio" | "call"
  source: str                    # "ints" | "str" | "int"
  input_format: str              # stdio: a key of PARSE; call: "args", "text", "sentence", "int"
  steps: tuple[Step, ...]

  @property
  def op_names(self) -> list[str]:
    return [s.op.name for s in self.steps]

  @property
  def out_type(self) -> str:
    return self.steps[-1].op.out_type if self.steps else self.source

  def evaluate(self, value: Any) -> Any:
    """The pure evaluator: the ops' `semantics` applied in order."""
    for step in self.steps:
      value = step.op.apply(value, step.p)
    return value

  def without(self, index: int) -> "Composition":
    return dataclasses.replace(self, steps=self.steps[:index] + self.steps[index + 1:])


def _fmt(template: str, step: Step, **names: str) -> str:
  return template.format(**step.p, **names)


def _fresh(base: str, used: set[str]) -> str:
  name, i = base, 2
  while name in used:
    name, i = f"{base}{i}", i + 1
  used.add(name)
  return name


def _elementwise(step: Step) -> bool:
  return step.op.kind in ("filter", "map")


def _group(steps: Sequence[Step], style: str) -> list[list[Step]]:
  """Consecutive steps rendered together: fused loops in the loop style, else one per step."""
  if style == "pipeline":
    return [[s] for s in steps]
  groups: list[list[Step]] = []
  run: list[Step] = []
  for step in steps:
    if _elementwise(step):
      run.append(step)
      continue
    if step.op.kind == "reduce" and step.op.acc is not None:
      groups.append(run + [step])
    else:
      if run:
        groups.append(run)
      groups.append([step])
    run = []
  if run:
    groups.append(run)
  return groups


def _whole(step: Step, src: str, src_type: str, used: set[str]) -> tuple[list[str], str]:
  """One step as a whole-value statement: (lines, result variable)."""
  op = step.op
  dst = _fresh(op.var, used)
  e = ELEM_VARS[src_type][0] if src_type in ELEM_VARS else "v"
  if op.kind in ("filter", "map"):
    inner = _fmt(op.code, step, e=e)
    body = f"{inner} for {e} in {src}"
    if op.kind == "filter":
      body = f"{e} for {e} in {src} if {inner}"
    line = f"{dst} = ''.join({body})" if op.out_type == "str" else f"{dst} = [{body}]"
    return [line], dst
  if op.kind == "reduce" and not op.code:
    return _loop([step], src, src_type, dst, used), dst
  return _fmt(op.code, step, src=src, dst=dst, e=e).split("\n"), dst


def _loop(steps: Sequence[Step], src: str, src_type: str, dst: str, used: set[str]) -> list[str]:
  """Element-wise steps (and an optional accumulating reduce) fused into one for loop."""
  last, local = steps[-1], set(used)
  e = _next_var(src_type, local)
  if last.op.kind == "reduce":
    init, update = _fmt(last.op.acc[0], last, acc=dst), last.op.acc[1]
    steps = steps[:-1]
  else:
    init = f"{dst} = ''" if last.op.out_type == "str" else f"{dst} = []"
    update = "{acc} += {e}" if last.op.out_type == "str" else "{acc}.append({e})"
  lines, depth = [init, f"for {e} in {src}:"], 1
  for step in steps:
    if step.op.kind == "filter":
      lines.append(INDENT * depth + f"if {_fmt(step.op.code, step, e=e)}:")
      depth += 1
    else:
      new = _next_var(step.op.out_type, local)
      lines.append(INDENT * depth + f"{new} = {_fmt(step.op.code, step, e=e)}")
      e = new
  for line in update.split("\n"):
    lines.append(INDENT * depth + _fmt(line, last, acc=dst, e=e))
  return lines


def _next_var(elem_type: str, local: set[str]) -> str:
  """A fresh element variable for `elem_type` (recorded in `local`)."""
  for name in ELEM_VARS[elem_type]:
    if name not in local:
      local.add(name)
      return name
  return _fresh(ELEM_VARS[elem_type][0], local)


def _output_line(value: str, out_type: str) -> str:
  if out_type == "ints":
    return f"print(*{value})"
  if out_type == "words":
    return f"print(' '.join({value}))"
  return f"print({value})"


def render_body(comp: Composition, style: str) -> tuple[list[str], str]:
  """The computation as unindented lines, and the variable holding the answer."""
  if style not in STYLES:
    raise ValueError(f"style must be one of {STYLES}, got {style!r}")
  src = SOURCE_VAR[comp.source]
  used = {src, "n", "i", "run", "d", "solve"}
  lines: list[str] = []
  cur, cur_type = src, comp.source
  for group in _group(comp.steps, style):
    fused = style == "loop" and (
        any(_elementwise(s) for s in group) or group[-1].op.acc is not None)
    if fused:
      dst = _fresh(group[-1].op.var, used)
      new_lines, cur = _loop(group, cur, cur_type, dst, used), dst
    else:
      new_lines, cur = _whole(group[0], cur, cur_type, used)
    lines += new_lines
    cur_type = group[-1].op.out_type
  return lines, cur


def render_program(comp: Composition, style: str) -> tuple[str, str]:
  """(starter code, full reference program); the program starts with the starter code."""
  body, result = render_body(comp, style)
  if comp.io == "call":
    starter = f"def solve({SOURCE_VAR[comp.source]}):\n"
    lines = [INDENT + line for line in body + [f"return {result}"]]
    return starter, starter + "\n".join(lines) + "\n"
  lines = list(PARSE[comp.input_format]) + body + [_output_line(result, comp.out_type)]
  return "", "\n".join(lines) + "\n"


def _cap(text: str) -> str:
  return text[:1].upper() + text[1:]


def _noun(step: Step, x: str, cur_type: str) -> str:
  return _fmt(step.op.noun, step, x=x, items=ELEM_NOUN.get(cur_type, "values"),
              item=ELEM_NOUN_1.get(cur_type, "value"))


def _closing(comp: Composition, what: str) -> str:
  verb = "Return" if comp.io == "call" else "Print"
  sep = ", separated by spaces" if comp.io == "stdio" and comp.out_type in ("ints", "words") else ""
  return f"{verb} {what}{sep}."


def render_statement(comp: Composition, phrasing: str) -> str:
  """The natural-language task: input description, then the steps or one nested phrase."""
  if phrasing not in PHRASINGS:
    raise ValueError(f"phrasing must be one of {PHRASINGS}, got {phrasing!r}")
  intro = (CALL_INTRO if comp.io == "call" else STDIO_INTRO)[comp.input_format]
  if phrasing == "nested":
    x = SOURCE_VAR[comp.source] if comp.io == "call" else STDIO_SOURCE_NOUN[comp.source]
    cur_type = comp.source
    for step in comp.steps:
      x, cur_type = _noun(step, x, cur_type), step.op.out_type
    return f"{intro} {_closing(comp, x)}"
  sentences, cur_type = [], comp.source
  steps = list(comp.steps)
  final = steps.pop() if steps and steps[-1].op.kind == "reduce" else None
  for step in steps:
    sentences.append(_cap(_fmt(step.op.steps[_pick(step)], step,
                               items=ELEM_NOUN.get(cur_type, "values"),
                               item=ELEM_NOUN_1.get(cur_type, "value"))) + ".")
    cur_type = step.op.out_type
  if final is None:
    sentences.append(_closing(comp, "the result"))
  else:
    ref = f"the resulting {ELEM_NOUN[cur_type]}" if steps else (
        SOURCE_VAR[comp.source] if comp.io == "call" else f"the {ELEM_NOUN[cur_type]}")
    sentences.append(_closing(comp, _noun(final, ref, cur_type)))
  return " ".join([intro] + sentences)


def _pick(step: Step) -> int:
  """Which synonym of a step's phrasing to use: a stable function of its constants."""
  variant = dict(step.params).get("variant", 0)
  return variant % len(step.op.steps)


def params_tuple(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
  return tuple(sorted(params.items()))
