"""Ports and process lifetimes for the local cluster, its tests and tools: one place for each.

- ``free_port``: a free TCP port on loopback.
- ``spawn``: a child process in a session of its own (so stopping it stops its children too, and it
  outlives a ``make`` that started it), stdin closed, stdout and stderr appended to a log file.
- ``stop``: SIGTERM, a bounded wait, then SIGKILL and a bounded wait: for a ``Popen`` we hold.
- ``stop_pid``: the same for a pid read back from a state file, checking it still runs our binary.
- ``signal_group``: one signal to a process group, nothing when it is gone already.

Only the standard library is used: the control plane runs this before any virtual environment exists.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

KILL_WAIT_S = 10.0  # how long a SIGKILLed process may take to be gone


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int, binary: str | None = None) -> bool:
    """True when pid runs and (if given) runs our binary, so we never signal a recycled pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return binary is None or (bool(cmdline) and cmdline[0].decode(errors="replace") == binary)


def spawn(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
          cwd: Path | str | None = None) -> subprocess.Popen[bytes]:
    """Start argv in a new session, its output appended to log_path (the child keeps the file open)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)


def signal_group(pid: int, sig: int) -> None:
    """Send sig to the process group pid leads (a process spawned in its own session); gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _signal(pid: int, sig: int, group: bool) -> None:
    if group:
        signal_group(pid, sig)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, timeout: float, group: bool = True) -> None:
    """SIGTERM (to its process group when group), wait up to timeout, then SIGKILL and wait again.

    A process that has exited already is only reaped. ``group=False`` signals the process alone: for one
    that shares our session."""
    if proc is None or proc.poll() is not None:
        return
    _signal(proc.pid, signal.SIGTERM, group)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc, group)


def kill(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, group: bool = True) -> None:
    """SIGKILL (to its process group when group) and wait for it: no chance to clean up."""
    if proc is None or proc.poll() is not None:
        return
    _signal(proc.pid, signal.SIGKILL, group)
    proc.wait(timeout=KILL_WAIT_S)


def stop_pid(pid: int, timeout: float, binary: str | None = None, group: bool = True) -> None:
    """``stop`` for a pid we did not start in this process (read from a state file): SIGTERM, poll until it
    is gone or the timeout, SIGKILL, poll again (bounded). Only while it still runs `binary`, when given."""
    if not pid or not pid_alive(pid, binary):
        return
    _signal(pid, signal.SIGTERM, group)
    if _gone_within(pid, binary, timeout, 0.1):
        return
    _signal(pid, signal.SIGKILL, group)
    _gone_within(pid, binary, KILL_WAIT_S, 0.05)


def _gone_within(pid: int, binary: str | None, timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid, binary):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
