"""A throwaway Debian container for the systemd tests: debootstrap, ``systemd-nspawn -b``, ``nsenter``.

The host runs no systemd (no machined, no system bus): the container is booted with
``--register=no --keep-unit`` and entered with ``nsenter -a`` into the namespaces of its init
(the child of systemd-nspawn). It shares the host's network, so apt inside reaches the host's
mirror and its loopback ports are the host's. Everything it leaves lives in one work directory
that :meth:`Container.close` removes, after the container is gone and with a check that nothing
is mounted below it (debootstrap mounts /proc and /sys in the target while it runs).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

PREFIX = "defender-agent-systemd-"
SUITE = "bookworm"
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
NSPAWN_RUN = Path("/run/systemd/nspawn")
OWNER_FILE = "owner.json"
STOP_TIMEOUT = 30.0  # nspawn's SIGTERM powers the container off; then SIGKILL
PR_SET_PDEATHSIG = 1

Command = Union[str, Sequence[str]]


class ContainerError(RuntimeError):
    """A container step failed or ran out of time; the message says which and shows its output."""


# -- the host's apt sources -----------------------------------------------------------------

@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    components: Tuple[str, ...]

    def line(self) -> str:
        return f"deb {self.uri} {self.suite} {' '.join(self.components)}"


def _one_line_sources(text: str) -> Iterable[AptSource]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line[4:])  # [signed-by=... arch=...]
        parts = line.split()
        if len(parts) >= 3:
            yield AptSource(parts[0], parts[1], tuple(parts[2:]))


def _deb822_sources(text: str) -> Iterable[AptSource]:
    for paragraph in re.split(r"\n\s*\n", text):
        fields: Dict[str, str] = {}
        key = ""
        for raw in paragraph.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1].isspace() and key:
                fields[key] += " " + raw.strip()
            elif ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        components = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield AptSource(uri, suite, components)


def host_apt_sources(apt_dir: Path = Path("/etc/apt")) -> List[AptSource]:
    """Every ``deb`` entry apt on this host reads (sources.list, sources.list.d/*.list and *.sources)."""
    out: List[AptSource] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in files:
        if path.is_file():
            out.extend(_one_line_sources(path.read_text(errors="replace")))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        out.extend(_deb822_sources(path.read_text(errors="replace")))
    return out


def debian_sources(sources: Iterable[AptSource], suite: str = SUITE) -> List[AptSource]:
    """The entries for ``suite`` and its -updates/-security suites, over http(s)."""
    return [s for s in sources
            if (s.suite == suite or s.suite.startswith((suite + "-", suite + "/")))
            and s.uri.startswith(("http://", "https://"))]


def debian_mirror(sources: Iterable[AptSource], suite: str = SUITE) -> Optional[str]:
    """The mirror of ``suite`` itself with ``main`` (for debootstrap), or None."""
    for s in sources:
        if s.suite == suite and "main" in s.components and s.uri.startswith(("http://", "https://")):
            return s.uri
    return None


# -- processes -------------------------------------------------------------------------------

def proc_start_time(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat): tells a pid from its reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: Optional[int], start: Optional[str]) -> bool:
    return pid is not None and start is not None and proc_start_time(pid) == start


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (nspawn then powers off the container)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def run_logged(cmd: Sequence[str], timeout: float, log: Path, env: Dict[str, str]) -> None:
    """Run a host command in its own process group with output to ``log``; the whole group is killed on
    timeout or interrupt."""
    with log.open("ab") as out:
        proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            _kill(-proc.pid, signal.SIGKILL)
            proc.wait(30)
            raise ContainerError(f"{cmd[0]} did not finish within {timeout:.0f} s: {tail(log)}") from exc
        except BaseException:  # Ctrl-C: the group goes too, then the caller cleans up
            _kill(-proc.pid, signal.SIGKILL)
            proc.wait(30)
            raise
    if code != 0:
        raise ContainerError(f"{cmd[0]} exited with status {code}: {tail(log)}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])


# -- mounts and removal ----------------------------------------------------------------------

def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: Path) -> List[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    base = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == base or point.startswith(base + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Unmount whatever is mounted below ``path`` (lazily), then ``rm -rf --one-file-system`` it."""
    if not path.exists():
        return
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30, check=False)
    left = mounts_under(path)
    if left:
        raise ContainerError(f"still mounted below {path}, not removing it: {left}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], capture_output=True, timeout=300, check=True)


# -- the container ---------------------------------------------------------------------------

class Container:
    """One rootfs in ``workdir/root``, booted with systemd-nspawn; commands run inside with nsenter."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.name = name
        self.console_log = workdir / "console.log"
        self.nspawn: Optional[subprocess.Popen[bytes]] = None
        self.init_pid: Optional[int] = None
        self._init_start: Optional[str] = None
        self._lock_name: Optional[str] = None
        self.env = {"PATH": INSIDE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
                    "SYSTEMD_PAGER": "", "PAGER": "cat", "SYSTEMD_COLORS": "0", "COLUMNS": "200", "TERM": "dumb"}
        self.env.update({k: v for k, v in os.environ.items() if k in PROXY_VARS})
        self._record({"owner": os.getpid(), "owner_start": proc_start_time(os.getpid()), "machine": name})

    def _record(self, values: Dict[str, object]) -> None:
        path = self.workdir / OWNER_FILE
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(values)
        path.write_text(json.dumps(data))

    def host_env(self) -> Dict[str, str]:
        return {"PATH": INSIDE_PATH, "LANG": "C.UTF-8", **{k: v for k, v in self.env.items() if k in PROXY_VARS}}

    # -- life cycle

    def bootstrap(self, mirror: str, include: Sequence[str], timeout: float) -> None:
        """debootstrap a minimal ``SUITE`` rootfs with ``include`` from ``mirror``."""
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(include)}", SUITE, str(self.root), mirror]
        run_logged(cmd, timeout, self.workdir / "debootstrap.log", self.host_env())
        (self.root / "var/log/journal").mkdir(parents=True, exist_ok=True)  # a journal that outlives the boot

    def boot(self, timeout: float) -> str:
        """Boot with systemd as PID 1 and wait until it is up; returns ``is-system-running``'s answer."""
        st = self.root.stat()
        self._lock_name = f"inode-{st.st_dev}:{st.st_ino}"
        cmd = ["systemd-nspawn", "-D", str(self.root), "-M", self.name, "-b", "--register=no", "--keep-unit",
               "--console=read-only"]
        with self.console_log.open("ab") as out:
            self.nspawn = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                           env=self.host_env(), start_new_session=True,
                                           preexec_fn=_die_with_parent)  # noqa: PLW1509 (only prctl)
        self._record({"nspawn": self.nspawn.pid, "nspawn_start": proc_start_time(self.nspawn.pid)})
        deadline = time.monotonic() + timeout
        while self.init_pid is None:
            if self.nspawn.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited with {self.nspawn.returncode}: {tail(self.console_log)}")
            if time.monotonic() > deadline:
                raise ContainerError(f"no init under systemd-nspawn within {timeout:.0f} s: {tail(self.console_log)}")
            self.init_pid = self._find_init(self.nspawn.pid)
            time.sleep(0.05)
        self._init_start = proc_start_time(self.init_pid)
        self._record({"init": self.init_pid, "init_start": self._init_start})
        state = ""
        while time.monotonic() < deadline:
            left = max(1.0, deadline - time.monotonic())
            state = self.run(["systemctl", "is-system-running", "--wait"], timeout=left).stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.2)  # the manager's socket is not there yet
        raise ContainerError(f"the container's systemd did not finish booting within {timeout:.0f} s "
                             f"(last state {state!r}): {tail(self.console_log)}")

    @staticmethod
    def _find_init(nspawn_pid: int) -> Optional[int]:
        for children in Path(f"/proc/{nspawn_pid}/task").glob("*/children"):
            for pid in children.read_text().split():
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
                except OSError:
                    continue
        return None

    def close(self, keep: bool = False) -> None:
        """Power the container off (SIGKILL to its init after STOP_TIMEOUT), then remove the work directory
        unless ``keep``."""
        try:
            if keep and self.running:
                self.run("journalctl -b --no-pager > /root/journal.txt 2>&1", timeout=60)
            self._stop()
        finally:
            if not keep:
                remove_tree(self.workdir)

    @property
    def running(self) -> bool:
        return alive(self.init_pid, self._init_start)

    def _stop(self) -> None:
        proc = self.nspawn
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT)
        if self.running and self.init_pid is not None:
            _kill(self.init_pid, signal.SIGKILL)  # the end of the container's PID namespace
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait(30)
        deadline = time.monotonic() + 10
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        # nspawn removes these itself unless it was killed.
        shutil.rmtree(NSPAWN_RUN / "propagate" / self.name, ignore_errors=True)
        if self._lock_name:
            (NSPAWN_RUN / "locks" / self._lock_name).unlink(missing_ok=True)

    # -- inside

    def run(self, cmd: Command, timeout: float = 60.0, input: Optional[str] = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` (argv, or a string for ``sh -c``) inside as root with a clean environment.

        ``timeout`` bounds it inside (coreutils ``timeout``, so nothing is left running in the
        container) and outside; running out of time raises :class:`ContainerError`.
        """
        if self.init_pid is None:
            raise ContainerError("the container is not booted")
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        full = ["nsenter", "-t", str(self.init_pid), "-a", "timeout", "--kill-after=5", f"{timeout:g}", *argv]
        try:
            result = subprocess.run(full, input=input, stdin=subprocess.DEVNULL if input is None else None,
                                    capture_output=True, text=True, timeout=timeout + 15, env=self.env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ContainerError(f"{_show(argv)} did not return within {timeout:g} s") from exc
        if result.returncode in (124, 137):  # timeout(1): TERM, or KILL after --kill-after
            raise ContainerError(f"{_show(argv)} did not finish within {timeout:g} s: {result.stdout[-2000:]}"
                                 f"{result.stderr[-2000:]}")
        if check and result.returncode != 0:
            raise ContainerError(f"{_show(argv)} exited with {result.returncode}:\n{result.stdout[-3000:]}"
                                 f"\n{result.stderr[-3000:]}")
        return result

    def write(self, path: str, text: str, mode: str = "0644", owner: str = "root:root") -> None:
        """Create or replace the file ``path`` inside (parents 0755), then set its owner and mode."""
        script = ('umask 022; mkdir -p -- "$(dirname -- "$1")" && umask 077 && cat > "$1" '
                  '&& chown -- "$2" "$1" && chmod -- "$3" "$1"')
        self.run(["sh", "-c", script, "sh", path, owner, mode], input=text, check=True)

    def copy_in(self, source: Path, directory: str = "/root") -> str:
        """Copy a host file into an existing directory of the rootfs; returns its path inside."""
        target = self.root / directory.lstrip("/")
        if target.is_symlink() or not target.is_dir():
            raise ContainerError(f"{directory} is not a plain directory in the rootfs")
        shutil.copyfile(source, target / source.name)
        return f"{directory.rstrip('/')}/{source.name}"


def _show(argv: Sequence[str]) -> str:
    return "`" + " ".join(argv)[:300] + "`"


def reap_stale(base: Path) -> List[Path]:
    """Remove work directories of earlier runs whose test process is gone (killed before its clean-up),
    killing their container first if it still runs. Returns what was removed."""
    removed = []
    for workdir in sorted(base.glob(PREFIX + "*")):
        try:
            data = json.loads((workdir / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if alive(data.get("owner"), data.get("owner_start")):
            continue  # another run in progress
        for pid_key in ("init", "nspawn"):
            pid, start = data.get(pid_key), data.get(pid_key + "_start")
            if alive(pid, start):
                _kill(pid, signal.SIGKILL)
        if data.get("machine"):
            shutil.rmtree(NSPAWN_RUN / "propagate" / str(data["machine"]), ignore_errors=True)
        remove_tree(workdir)
        removed.append(workdir)
    return removed
