"""APPS' `code()` wrapper for standard-input programs.

APPS' harness (testing_util.run_test) runs every stdin program as the body of `def code():`
(the leading imports stay at module level, `stdin = sys.stdin` / `stdout = sys.stdout` are
defined first) and then calls `code()`. Its reference solutions rely on that: some `return` at
top level to stop early, some declare `nonlocal` a name the program assigns at top level.

Here a program runs as a plain module whenever it compiles as one, so ordinary programs keep their
exact meaning (globals, `if __name__ == "__main__":`, `global` statements in functions). Only a
program that does not compile as a module is wrapped, and only if it then compiles. The wrapping
works on the syntax tree, not by re-indenting lines as APPS does, so string literals and mixed
indentation are left intact; `from m import *` statements move to module level (they are not
allowed in a function), and a name that a nested function declares `global` is declared global
in `code()` too, so it keeps its module-level meaning.

Standalone: stdlib only, no package imports (it is part of the sandbox payload).
"""
import ast

FUNCTION = "code"
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _is_import(node: ast.stmt) -> bool:
  return isinstance(node, (ast.Import, ast.ImportFrom))


def _is_star_import(node: ast.stmt) -> bool:
  return isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)


def _declarations(body: list) -> tuple:
  """(names declared global in `body`'s own scope, global in nested scopes, nonlocal in nested)."""
  own, nested_global, nested_nonlocal = set(), set(), set()
  stack = [(node, False) for node in body]
  while stack:
    node, nested = stack.pop()
    if isinstance(node, ast.Global):
      (nested_global if nested else own).update(node.names)
    elif isinstance(node, ast.Nonlocal) and nested:
      nested_nonlocal.update(node.names)
    inside = nested or isinstance(node, _SCOPES)
    stack.extend((child, inside) for child in ast.iter_child_nodes(node))
  return own, nested_global, nested_nonlocal


def _function(name: str, body: list) -> ast.FunctionDef:
  fields = dict(name=name, body=body, decorator_list=[], returns=None, type_comment=None,
                args=ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[],
                                   kw_defaults=[], kwarg=None, defaults=[]))
  if "type_params" in ast.FunctionDef._fields:  # Python >= 3.12
    fields["type_params"] = []
  return ast.FunctionDef(**fields)


def wrap(source: str) -> ast.Module:
  """The module `<leading imports> def code(): <rest of the program>` followed by `code()`."""
  body = ast.parse(source).body
  start = 0
  while start < len(body) and _is_import(body[start]):
    start += 1
  head = body[:start] + [s for s in body[start:] if _is_star_import(s)]
  rest = [s for s in body[start:] if not _is_star_import(s)]
  own, nested_global, nested_nonlocal = _declarations(rest)
  hoisted = sorted(nested_global - own - nested_nonlocal)
  inner = ([ast.Global(names=hoisted)] if hoisted else []) + (rest or [ast.Pass()])
  call = ast.Expr(ast.Call(ast.Name(FUNCTION, ast.Load()), [], []))
  module = ast.Module(body=head + [_function(FUNCTION, inner), call], type_ignores=[])
  return ast.fix_missing_locations(module)


def compile_program(source: str, filename: str, allow_wrap: bool):
  """Code object of `source` as a module; with `allow_wrap`, APPS-wrapped when only that compiles.
  Raises the module's own SyntaxError when neither compiles."""
  try:
    return compile(source, filename, "exec")
  except SyntaxError as err:
    if not allow_wrap:
      raise
    original = err
  try:
    return compile(wrap(source), filename, "exec")
  except (SyntaxError, ValueError, TypeError):
    raise original from None
