"""Run a program safely and boundedly: no shell, fixed environment, own process group, time and size caps."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": SAFE_PATH, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class RunResult:
    returncode: Optional[int]  # None when killed by us (timeout or output cap)
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    overflow: bool = False
    duration: float = 0.0

    def stderr_line(self) -> str:
        """The first non-empty line of stderr, shortened, for error messages."""
        for line in self.stderr.decode("utf-8", "replace").splitlines():
            if line.strip():
                text = line.strip()
                return text if len(text) <= 200 else text[:197] + "..."
        return ""


def program_problem(path: str, euid: Optional[int] = None) -> Optional[str]:
    """Why ``path`` must not be run (None when it may): not absolute, missing, not a regular
    executable file, group- or world-writable, or owned by a user other than root and us."""
    if not os.path.isabs(path):
        return f"{path!r} is not an absolute path"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path}: no such file"
    except OSError as exc:
        return f"{path}: cannot stat it ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"{path} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o}); run chmod go-w on it"
        )
    me = os.geteuid() if euid is None else euid
    if st.st_uid not in (0, me):
        return f"{path} is owned by uid {st.st_uid}, neither root nor the agent's user (uid {me})"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable by the agent's user"
    return None


def run_bounded(
    argv: Sequence[str],
    timeout: float,
    max_stdout: int,
    max_stderr: int = 4096,
    env: Optional[Mapping[str, str]] = None,
    stdin: Optional[bytes] = None,
) -> RunResult:
    """Run ``argv`` in a new session; kill its whole process group on timeout, on too much
    stdout, and once the program has exited (no leftovers). stderr beyond ``max_stderr`` is dropped.
    ``stdin`` is written to the program (then closed) within the same timeout; a program that does
    not read it all is not waited for."""
    start = time.monotonic()
    deadline = start + timeout
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**BASE_ENV, **(env or {})},
        cwd="/",
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    timed_out = overflow = False
    pending = memoryview(stdin or b"")
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        if proc.stdin is not None:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        while sel.get_map() and not overflow:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in sel.select(remaining):
                if key.fileobj is proc.stdin:
                    pending = _feed(proc.stdin, pending, sel)
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    if len(out) + len(chunk) > max_stdout:
                        overflow = True
                        break
                    out += chunk
                else:
                    err += chunk[: max(0, max_stderr - len(err))]
    if not timed_out and not overflow:
        timed_out = not _wait_exited(proc.pid, deadline)
    # The leader is now a zombie (or still running): its pid still names the group, so this
    # cannot hit an unrelated process group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    code = proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    if proc.stdin is not None and not proc.stdin.closed:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    return RunResult(
        returncode=None if (timed_out or overflow) else code,
        stdout=bytes(out),
        stderr=bytes(err),
        timed_out=timed_out,
        overflow=overflow,
        duration=time.monotonic() - start,
    )


def _feed(pipe: Any, pending: memoryview, sel: selectors.BaseSelector) -> memoryview:
    """Write what the pipe takes of ``pending``; once all is written (or the program closed it), close it."""
    try:
        written = os.write(pipe.fileno(), pending[:65536]) if pending else 0
    except BlockingIOError:  # the pipe filled up after all: try again when it is writable
        written = 0
    except BrokenPipeError:  # the program closed its stdin: what it did not read is of no use to it
        written = len(pending)
    pending = pending[written:]
    if not pending:
        sel.unregister(pipe)
        with contextlib.suppress(OSError):
            pipe.close()
    return pending


def _wait_exited(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` has exited, without reaping it; False at the deadline."""
    pause = 0.002
    while True:
        result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if result is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
