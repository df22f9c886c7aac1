"""The sandbox: runs generated programs against their tests and returns graded rewards.

Public API: `ExecutionPool`, `run_programs`, `TestSuite`, `ExecResult`, `Limits`,
`resolve_isolation` and `SandboxUnavailable` (raised when the bwrap level cannot start and the
weaker level was not asked for).
Import-light (no JAX): workers are fresh `python -I` processes running the modules listed in
`payload.MODULES`.

Why a verdict cannot be forged (threat model: the program is adversarial).
  * stdio / call tests: the program's process returns only data (stdout text; return values as
    plain data: builtins and a few stdlib value types such as Counter or deque, rebuilt from the
    trusted side's own classes, see `plain`), and the comparison with the expected output, which
    never enters the sandbox, happens on the host. APPS stdin programs that only compile inside
    APPS' `code()` wrapper (top-level `return`) are run wrapped (see `wrapping`).
  * assert / check tests: the judge (in the zygote, where no candidate code ever runs and which
    the program cannot reach: another uid, or outside the program's own namespaces) runs the
    test code; the program's functions are stand-ins that ship plain-data arguments to the
    program process and plain data back; a returned value that is
    not plain arrives as an inert marker on which only `is` works (`re.Match` vs None), every
    other use errors. Always-equal objects cannot cross, monkeypatching the
    program's own interpreter (or ctypes tricks) cannot touch the judge, and expected values are
    not in the program's memory.
  * unittest tests (and the rare asserts that need non-plain objects) must run in the program's
    process: a test counts only if the reply carries a random nonce drawn after the program's top
    level ran and sent only when that test starts, and an integrity check (builtins, unittest
    classes, trace hooks) turns every later test into an error once tampering is seen. This is the
    weakest channel: code that rewrites the runner itself (ctypes) could still forge it.
  * In every mode, missing replies are failures: exiting early, crashing, killing processes, or
    printing "passed" scores 0 for the tests not reported through the channel.
Isolation (see `isolation`): bubblewrap namespaces, a minimal read-only filesystem, private /tmp,
no network; each program under its own unprivileged uid (root) or in its own user and pid
namespace (any other user, see `namespaces`); rlimits (processes and threads bounded per
program), per-test and per-program deadlines, and every process of a program killed after it.
The whole standard library imports at both levels (at the rlimits level as root through
descriptors, see `reroot`).
"""
from restrl_jax.execution.isolation import SandboxUnavailable
from restrl_jax.execution.jobs import Limits
from restrl_jax.execution.pool import ExecutionPool, resolve_isolation, run_programs
from restrl_jax.execution.spec import ExecResult, TestSuite

__all__ = ["ExecutionPool", "run_programs", "TestSuite", "ExecResult", "Limits",
           "resolve_isolation", "SandboxUnavailable"]
