"""The psutil calls the system collectors make, behind one small interface tests can replace."""

from __future__ import annotations

from typing import Any, List, Mapping, Protocol, Sequence, Tuple

import psutil


class SystemSource(Protocol):
    def cpu_times(self, percpu: bool) -> Any: ...

    def virtual_memory(self) -> Any: ...

    def swap_memory(self) -> Any: ...

    def getloadavg(self) -> Tuple[float, float, float]: ...

    def sensors_temperatures(self) -> Mapping[str, Sequence[Any]]: ...

    def boot_time(self) -> float: ...

    def pids(self) -> List[int]: ...

    def users(self) -> Sequence[Any]: ...

    def own_fds(self) -> int: ...

    def disk_usage(self, path: str) -> Any: ...


class PsutilSystem:
    """Production source: psutil (imported on first use)."""

    def __init__(self) -> None:
        self._psutil = psutil
        self._me = psutil.Process()

    def cpu_times(self, percpu: bool) -> Any:
        return self._psutil.cpu_times(percpu=True) if percpu else self._psutil.cpu_times(percpu=False)

    def virtual_memory(self) -> Any:
        return self._psutil.virtual_memory()

    def swap_memory(self) -> Any:
        return self._psutil.swap_memory()

    def getloadavg(self) -> Tuple[float, float, float]:
        return self._psutil.getloadavg()

    def sensors_temperatures(self) -> Mapping[str, Sequence[Any]]:
        read = getattr(self._psutil, "sensors_temperatures", None)
        return read() if read is not None else {}

    def boot_time(self) -> float:
        return float(self._psutil.boot_time())

    def pids(self) -> List[int]:
        return list(self._psutil.pids())

    def users(self) -> Sequence[Any]:
        return self._psutil.users()

    def own_fds(self) -> int:
        return int(self._me.num_fds())

    def disk_usage(self, path: str) -> Any:
        return self._psutil.disk_usage(path)
