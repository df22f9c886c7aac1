"""Length-prefixed JSON messages over raw file descriptors (pipes).

Each message is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. `recv`
refuses messages over `max_bytes`, so a peer cannot make the reader allocate without bound.

Standalone: stdlib only, no package imports (it is part of the sandbox payload).
"""
import json
import os
import select
import time

DEFAULT_MAX_BYTES = 64 << 20


class WireError(Exception):
  """The peer closed the channel, sent a malformed message, or did not answer in time."""


def send(fd: int, message) -> None:
  data = json.dumps(message, separators=(",", ":")).encode()
  view = memoryview(len(data).to_bytes(4, "big") + data)
  while view:
    written = os.write(fd, view)
    view = view[written:]


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
  chunks, missing = [], size
  while missing:
    if deadline is not None:
      left = deadline - time.monotonic()
      if left <= 0 or not select.select([fd], [], [], left)[0]:
        raise WireError("timed out")
    chunk = os.read(fd, min(missing, 1 << 20))
    if not chunk:
      raise WireError("channel closed")
    chunks.append(chunk)
    missing -= len(chunk)
  return b"".join(chunks)


def recv(fd: int, timeout: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
  """The next message; `WireError` on EOF, timeout, oversize or malformed JSON."""
  deadline = None if timeout is None else time.monotonic() + timeout
  size = int.from_bytes(_read_exact(fd, 4, deadline), "big")
  if size > max_bytes:
    raise WireError(f"message of {size} bytes exceeds the limit of {max_bytes}")
  try:
    return json.loads(_read_exact(fd, size, deadline))
  except (ValueError, UnicodeDecodeError) as err:
    raise WireError(f"malformed message: {err}") from None
