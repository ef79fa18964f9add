"""Run a program safely and boundedly: no shell, fixed environment, own process group, time and size caps."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Set

from agent.schema import format_size

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": SAFE_PATH, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class RunResult:
    returncode: Optional[int]  # None when killed by us (timeout or output cap)
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    overflow: bool = False  # killed for writing more than max_stdout bytes to stdout
    duration: float = 0.0
    timeout: float = 0.0  # the limits it ran under, for describe()
    max_stdout: int = 0

    @property
    def ok(self) -> bool:
        """It ran to its end and exited with status 0."""
        return self.returncode == 0 and not self.timed_out and not self.overflow

    def describe(self) -> str:
        """What became of the program, to follow its name in a message: "exited with status 3",
        "was killed by signal SIGTERM", "timed out after 5s; its process group was killed",
        "was killed: wrote more than 64KiB to stdout"."""
        if self.timed_out:
            return f"timed out after {self.timeout:g}s; its process group was killed"
        if self.overflow:
            size = format_size(self.max_stdout)
            return f"was killed: wrote more than {size if size[-1] == 'B' else size + ' bytes'} to stdout"
        assert self.returncode is not None
        return describe_exit(self.returncode)

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


class Running:
    """The process groups that :func:`run_bounded` has running for one owner (say, one exec collector),
    so that another thread can kill them at once with :meth:`kill_all` (the owner's ``close()``).

    Once :meth:`kill_all` was called, every later start is killed as soon as it is registered: a run
    racing a close does not outlive it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: Set[int] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, pid: int) -> bool:
        """Register the process group led by ``pid`` (not yet reaped); False, and the group killed, once closed."""
        with self._lock:
            if not self._closed:
                self._groups.add(pid)
                return True
        _kill_group(pid)
        return False

    def discard(self, pid: int) -> None:
        """Forget ``pid`` (before it is reaped: after that its number may name someone else)."""
        with self._lock:
            self._groups.discard(pid)

    def kill_all(self) -> None:
        """Kill every registered process group now, and every one registered from now on."""
        with self._lock:
            self._closed = True
            for pid in self._groups:
                _kill_group(pid)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_bounded(
    argv: Sequence[str],
    timeout: float,
    max_stdout: int,
    max_stderr: int = 4096,
    env: Optional[Mapping[str, str]] = None,
    stdin: Optional[bytes] = None,
    running: Optional[Running] = None,
) -> RunResult:
    """Run ``argv`` in a new session; kill its whole process group on timeout, on too much
    stdout, and once the program has exited (no leftovers). stderr beyond ``max_stderr`` is dropped.
    ``stdin`` is written to the program (then closed) within the same timeout; a program that does
    not read it all is not waited for. While it runs, its group is registered in ``running``, whose
    :meth:`Running.kill_all` ends it at once (the run then returns, killed by SIGKILL)."""
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
    if running is not None:
        running.add(proc.pid)  # killed at once if its owner is closing: the pipes below then end at once
    out, err = bytearray(), bytearray()
    timed_out = overflow = False
    pending = memoryview(stdin or b"")
    try:
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
    finally:
        # The leader is now a zombie (or still running): its pid still names the group, so this
        # cannot hit an unrelated process group. Once reaped, the pid may name anyone: forget it first.
        _kill_group(proc.pid)
        if running is not None:
            running.discard(proc.pid)
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
        timeout=timeout,
        max_stdout=max_stdout,
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
