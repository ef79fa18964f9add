"""Per-interface byte and packet counters from /proc/net/dev, plus ifindex and boot id.

We read /proc/net/dev ourselves instead of ``psutil.net_io_counters``: psutil's
``nowrap`` treats every decrease as a wrap and adds the old value (hiding resets),
and keeps that state at module level. ``proc_root``/``sys_root`` make the I/O
testable on a fixture tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union


@dataclass(frozen=True)
class IfCounters:
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    ifindex: Optional[int] = None  # a re-created interface gets a new one


class CountersParseError(ValueError):
    pass


def parse_proc_net_dev(text: str) -> Dict[str, IfCounters]:
    """Parse /proc/net/dev: ``name: rx_bytes rx_packets ... (8 rx) tx_bytes tx_packets ... (8 tx)``."""
    out: Dict[str, IfCounters] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if ":" not in line or "|" in line:
            continue  # the two header lines
        name, _, rest = line.partition(":")  # interface names cannot contain ':'
        fields = rest.split()
        if len(fields) < 16:
            raise CountersParseError(f"/proc/net/dev line {number}: expected 16 counters, got {len(fields)}")
        try:
            values = [int(f) for f in fields[:16]]
        except ValueError:
            raise CountersParseError(f"/proc/net/dev line {number}: counters must be integers") from None
        out[name.strip()] = IfCounters(values[0], values[8], values[1], values[9])
    return out


class ProcCounters:
    """Reads counters (with ifindex) and the boot id below ``proc_root`` and ``sys_root``."""

    def __init__(self, proc_root: Union[str, Path] = "/proc", sys_root: Union[str, Path] = "/sys") -> None:
        self.proc_root = Path(proc_root)
        self.sys_root = Path(sys_root)

    def counters(self) -> Dict[str, IfCounters]:
        parsed = parse_proc_net_dev((self.proc_root / "net" / "dev").read_text(encoding="ascii"))
        out: Dict[str, IfCounters] = {}
        for name, c in parsed.items():
            out[name] = IfCounters(c.bytes_in, c.bytes_out, c.packets_in, c.packets_out, self._ifindex(name))
        return out

    def _ifindex(self, name: str) -> Optional[int]:
        try:
            return int((self.sys_root / "class" / "net" / name / "ifindex").read_text().strip())
        except (OSError, ValueError):
            return None

    def boot_id(self) -> Optional[str]:
        try:
            text = (self.proc_root / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
        except OSError:
            return None
        return text or None
