"""A program's own user and pid namespace: how a sandbox without root keeps programs apart.

A sandbox started by an ordinary user holds a single uid (an unprivileged user namespace maps only
the caller's uid), which its zygote and its programs then share. So each program gets namespaces
of its own, made by a child of the zygote before any program code runs:
  * a user namespace in which the program's uid is `uid` (mapped onto the sandbox's one uid):
    capabilities held there reach nothing outside it, and they are dropped anyway
    (`drop_capabilities`, with no_new_privs so no executable can grant any back);
  * a pid namespace whose init is trusted code (see `sandbox_proc`): the program sees only its
    own processes, so kill(-1), a kill of its parent or ptrace reach nothing else, and when the
    init dies the kernel kills every process of the namespace;
  * RLIMIT_NPROC is counted per (user namespace, uid) since Linux 5.14, so the limit set inside
    bounds the program's processes and threads alone, not the trainer's that share its host uid.
The zygote itself is not dumpable (`guard_zygote`), and neither is the child that makes a
program's namespaces once its id maps are written (`enter`), nor, by inheritance, the init and
the program: a process of the same uid cannot open their /proc/<pid>/mem, fd or environ, although
the program's /proc still lists them.

ctypes wrappers for unshare, prctl and capset (`os.unshare` needs Python 3.12).
Standalone: stdlib only, no package imports (it is part of the sandbox payload).
"""
import ctypes
import os

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
_CAPABILITY_VERSION_3 = 0x20080522

_LIBC = []


def _libc():
  if not _LIBC:
    _LIBC.append(ctypes.CDLL(None, use_errno=True))
  return _LIBC[0]


def _check(result: int, what: str) -> None:
  if result != 0:
    errno = ctypes.get_errno()
    raise OSError(errno, f"{what}: {os.strerror(errno)}")


def prctl(option: int, value: int) -> None:
  _check(_libc().prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), f"prctl({option}, {value})")


def guard_zygote() -> None:
  """Make the zygote non-dumpable and the reaper of the program inits it starts (idempotent)."""
  prctl(PR_SET_DUMPABLE, 0)
  prctl(PR_SET_CHILD_SUBREAPER, 1)


def _write(path: str, text: str) -> None:
  with open(path, "w", encoding="ascii") as f:
    f.write(text)


def enter(uid: int) -> None:
  """Move the calling process into a new user namespace where it is `uid`, and make its next
  child the init of a new pid namespace. The caller gets every capability in the new user
  namespace: call `drop_capabilities` before running anything untrusted."""
  host_uid, host_gid = os.geteuid(), os.getegid()
  prctl(PR_SET_DUMPABLE, 1)  # only a dumpable process may write its own id maps
  _check(_libc().unshare(CLONE_NEWUSER | CLONE_NEWPID), "unshare(user, pid namespaces)")
  _write("/proc/self/setgroups", "deny")
  _write("/proc/self/uid_map", f"{uid} {host_uid} 1")
  _write("/proc/self/gid_map", f"{uid} {host_gid} 1")
  # Not dumpable again at once: this process outlives the fork of the namespace's init for a
  # moment, with no capabilities left and the program's uid, so while dumpable the program could
  # open its /proc/<pid>/mem, fd and environ (and forge the init pid it reports). The init and
  # the program inherit the flag.
  prctl(PR_SET_DUMPABLE, 0)


def drop_capabilities() -> None:
  """Clear every capability set of the calling process for good (no_new_privs)."""
  prctl(PR_SET_NO_NEW_PRIVS, 1)
  header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
  data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: 2 x 32 bits each
  _check(_libc().capset(header, data), "capset")
