"""Restores the Python argument types that MBPP+'s JSON inputs lost.

JSON has no tuples, sets or complex numbers, so evalplus converts the inputs of specific tasks back
before calling a function (`evalplus.data.mbpp.mbpp_deserialize_inputs`; the task numbers below are
that function's, re-expressed as one rule per task). `restore_args(task_number, args)` applies the
rule of a task to one test's argument list; tasks without a rule keep their arguments as decoded.
"""
from __future__ import annotations

from typing import Any, Callable

Args = list[Any]


def _tuples_deep(x: Any) -> Any:
  return tuple(_tuples_deep(v) for v in x) if isinstance(x, list) else x


def _each_arg_tuple(a: Args) -> Args:
  return [tuple(v) for v in a]


def _each_arg_items_tuple(a: Args) -> Args:
  return [[tuple(v) for v in arg] for arg in a]


def _each_arg_tuple_of_tuples(a: Args) -> Args:
  return [tuple(tuple(v) for v in arg) for arg in a]


def _first_arg_items_tuple(a: Args) -> Args:
  return [[tuple(v) for v in a[0]], *a[1:]]


def _first_arg_tuple(a: Args) -> Args:
  return [tuple(a[0]), *a[1:]]


def _second_arg_tuple(a: Args) -> Args:
  return [a[0], tuple(a[1]), *a[2:]]


def _sets_or_empty_dicts(a: Args) -> Args:
  # evalplus turns an empty list into `{}` (an empty dict), non-empty ones into sets.
  return [[set(v) if isinstance(v, list) and v else {} for v in a[0]]]


def _mixed_first_arg_tuple(a: Args) -> Args:
  return [tuple(tuple(v) if isinstance(v, list) else v for v in a[0])]


def _dict_values_tuple(a: Args) -> Args:
  return [{k: tuple(v) for k, v in a[0].items()}, *a[1:]]


def _float_complex(a: Args) -> Args:
  return [float(a[0]), complex(a[1])]


def _complex(a: Args) -> Args:
  return [complex(a[0])]


_RULES: dict[Callable[[Args], Any], tuple[int, ...]] = {
    _each_arg_tuple: (2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579,
                      596, 616, 630, 726, 740, 744, 809),
    _each_arg_items_tuple: (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614,
                            780),
    _first_arg_items_tuple: (75, 413, 444, 753),
    _second_arg_tuple: (106, 750),
    _sets_or_empty_dicts: (115,),
    _float_complex: (124,),
    _first_arg_tuple: (250, 307, 405, 446, 617, 720, 763, 808),
    _each_arg_tuple_of_tuples: (259, 401, 445),
    _mixed_first_arg_tuple: (278,),
    _dict_values_tuple: (722,),
    _complex: (252,),
    _tuples_deep: (580, 615, 791),
}
RULE_BY_TASK: dict[int, Callable[[Args], Any]] = {
    task: rule for rule, tasks in _RULES.items() for task in tasks}


def restore_args(task_number: int, args: Args) -> Any:
  """The argument list of one test, with the task's types restored."""
  rule = RULE_BY_TASK.get(task_number)
  return list(rule(args)) if rule else args
