"""Turn a :class:`Report` into Device Defender bytes (JSON or CBOR, long or short keys).

Every value is checked first (:mod:`agent.report.rules`: custom values with
``normalize_value`` + ``check_value``, the one definition the sampler and ``validate``
use too). A custom metric that breaks a rule is dropped and reported in ``EncodedReport.dropped``; the rest of
the report still goes. Lists longer than the cap keep a deterministic subset
(ports ascending; connections by remote address, then local port) and keep
``total`` as the true count; lists under the cap keep the collector's order (the
built-in collectors sort already). The payload is kept under 128 KiB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import cbor2

from agent.catalog import MAX_PAYLOAD_BYTES, REPORT_VERSION, KeyNames, MetricType, PayloadFormat, key_map
from agent.config.model import CustomMetricConfig
from agent.errors import ReportError, Violation
from agent.report import rules
from agent.report.model import (
    Connection,
    Connections,
    CustomValue,
    ListeningPort,
    ListeningPorts,
    NetworkStats,
    Report,
    StandardValue,
)


@dataclass(frozen=True)
class EncodedReport:
    report_id: int
    payload: bytes
    format: PayloadFormat
    dropped: Tuple[Violation, ...] = ()  # custom metrics left out, with the broken rule
    capped: Tuple[str, ...] = ()  # lists that were cut to the cap (JSON paths)
    unusual_strings: Tuple[str, ...] = ()  # metrics sent with characters outside the set (opted in)
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def serialize(document: Mapping[str, Any], fmt: PayloadFormat) -> bytes:
    if fmt == PayloadFormat.CBOR:
        return bytes(cbor2.dumps(document))
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


class Encoder:
    """Builds checked report documents for one configuration."""

    def __init__(
        self,
        custom_metrics: Mapping[str, CustomMetricConfig],
        fmt: PayloadFormat = PayloadFormat.JSON,
        key_names: KeyNames = KeyNames.LONG,
        max_list_items: int = 500,
        max_payload: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.custom_metrics = custom_metrics
        self.format = PayloadFormat(fmt)  # ValueError for anything but json or cbor
        self.key_names = KeyNames(key_names)
        self.max_list_items = max_list_items
        self.max_payload = max_payload
        self._k = key_map(key_names)
        self._network_keys = tuple(self._k[f] for f in _NETWORK_FIELDS)

    def encode(self, report: Report) -> EncodedReport:
        """The checked payload. Over the size limit, the largest custom metrics are left out first
        (each in ``dropped`` with its size), then the standard lists are cut further: the standard
        metrics always go."""
        problem = rules.check_report_id(report.report_id)
        if problem is not None:
            raise ReportError([Violation("header.report_id", problem, report.report_id)])
        dropped: List[Violation] = []
        unusual: List[str] = []
        custom = self._custom_block(report.custom, dropped, unusual)
        cap = self.max_list_items
        largest_first: Optional[List[Tuple[str, int]]] = None  # custom metrics by encoded size, once needed
        while True:
            capped: List[str] = []
            metrics = self._metrics_block(report.standard, cap, capped)
            document = self._document(report.report_id, metrics, custom)
            payload = serialize(document, self.format)
            if len(payload) <= self.max_payload:
                break
            if custom:
                if largest_first is None:
                    largest_first = self._largest_first(custom)
                self._leave_out(custom, largest_first.pop(0), len(payload), dropped)
            elif cap > 1:
                cap //= 2
            else:
                raise ReportError(
                    [Violation("", f"report is {len(payload)} bytes; the limit is {self.max_payload}", None)]
                )
        return EncodedReport(
            report_id=report.report_id,
            payload=payload,
            format=self.format,
            dropped=tuple(dropped),
            capped=tuple(capped),
            unusual_strings=tuple(unusual),
            document=document,
        )

    def _largest_first(self, custom: Mapping[str, Any]) -> List[Tuple[str, int]]:
        """(name, encoded size) of each custom metric, largest first (ties: the name first in order)."""
        sizes = [(name, len(serialize({name: wrapped}, self.format))) for name, wrapped in custom.items()]
        return sorted(sizes, key=lambda item: (-item[1], item[0]))

    def _leave_out(self, custom: Dict[str, Any], largest: Tuple[str, int], size: int,
                   dropped: List[Violation]) -> None:
        """Remove the largest custom metric still in the report, and say why in ``dropped``."""
        name, own = largest
        del custom[name]
        dropped.append(Violation(
            f"custom_metrics.{name}",
            f"left out: the report was {size} bytes, over the {self.max_payload}-byte limit, and this is its "
            f"largest custom metric ({own} bytes)",
            None,
            name,
        ))

    # -- document parts --------------------------------------------------------------

    def _document(self, report_id: int, metrics: Dict[str, Any], custom: Dict[str, Any]) -> Dict[str, Any]:
        k = self._k
        doc: Dict[str, Any] = {k["header"]: {k["report_id"]: report_id, k["version"]: REPORT_VERSION}}
        if metrics or not custom:
            doc[k["metrics"]] = metrics
        if custom:
            doc[k["custom_metrics"]] = custom
        return doc

    def _metrics_block(self, standard: Mapping[str, StandardValue], cap: int, capped: List[str]) -> Dict[str, Any]:
        k = self._k
        out: Dict[str, Any] = {}
        for name, value in standard.items():
            if name not in k:
                raise ReportError([Violation(f"metrics.{name}", "not a standard Device Defender metric", name)])
            if isinstance(value, ListeningPorts):
                out[k[name]] = self._ports(name, value, cap, capped)
            elif isinstance(value, Connections):
                out[k[name]] = {k["established_connections"]: self._connections(name, value, cap, capped)}
            elif isinstance(value, NetworkStats):
                out[k[name]] = self._network(name, value)
            else:
                raise ReportError([Violation(f"metrics.{name}", "unknown standard value type", type(value).__name__)])
        return out

    def _ports(self, name: str, value: ListeningPorts, cap: int, capped: List[str]) -> Dict[str, Any]:
        k = self._k
        ports: Sequence[ListeningPort] = value.ports
        total = max(value.true_total, len(ports))
        if len(ports) > cap:
            ports = sorted(ports, key=_port_order)[:cap]
            capped.append(f"metrics.{name}.ports")
        port_key, if_key = k["port"], k["interface"]
        if all(type(p.port) is int and 0 < p.port <= 65535 for p in ports):  # the common case, one comprehension
            items = [{port_key: p.port, if_key: p.interface} if p.interface else {port_key: p.port} for p in ports]
            _require_count(total, f"metrics.{name}.total")
            return {k["ports"]: items, k["total"]: total}
        items = []
        for port in ports:
            number = port.port
            if type(number) is not int or not 0 < number <= 65535:
                index = ports.index(port)
                _require(rules.check_port(number), f"metrics.{name}.ports[{index}].port", number)
            item: Dict[str, Any] = {port_key: number}
            if port.interface:
                item[if_key] = port.interface
            items.append(item)
        _require(rules.check_count(total), f"metrics.{name}.total", total)
        return {k["ports"]: items, k["total"]: total}

    def _connections(self, name: str, value: Connections, cap: int, capped: List[str]) -> Dict[str, Any]:
        k = self._k
        conns: Sequence[Connection] = value.connections
        total = max(value.true_total, len(conns))
        if len(conns) > cap:
            conns = sorted(conns, key=_connection_order)[:cap]
            capped.append(f"metrics.{name}.established_connections.connections")
        rad_key, lp_key, li_key = k["remote_addr"], k["local_port"], k["local_interface"]
        addrs_ok = rules.all_valid_remote_addrs([conn.remote_addr for conn in conns])
        if addrs_ok and all(
            type(c.local_port) is int and 0 <= c.local_port <= 65535 and c.local_interface for c in conns
        ):  # the common case: every field present and valid, built in one comprehension
            items = [{rad_key: c.remote_addr, lp_key: c.local_port, li_key: c.local_interface} for c in conns]
            _require_count(total, f"metrics.{name}.established_connections.total")
            return {k["connections"]: items, k["total"]: total}
        check_addr = rules.check_remote_addr
        items = []
        for index, conn in enumerate(conns):
            addr, port, interface = conn.remote_addr, conn.local_port, conn.local_interface
            if (not addrs_ok and check_addr(addr) is not None) or (
                port is not None and (type(port) is not int or not 0 <= port <= 65535)
            ):
                items.append(self._connection_item(name, conns, index))  # raises with the precise path
            elif port is not None and interface:
                items.append({rad_key: addr, lp_key: port, li_key: interface})
            else:
                items.append(self._connection_item(name, conns, index))
        _require(rules.check_count(total), f"metrics.{name}.established_connections.total", total)
        return {k["connections"]: items, k["total"]: total}

    def _connection_item(self, name: str, conns: Sequence[Connection], index: int) -> Dict[str, Any]:
        k = self._k
        conn = conns[index]
        path = f"metrics.{name}.established_connections.connections[{index}]"
        _require(rules.check_remote_addr(conn.remote_addr), f"{path}.remote_addr", conn.remote_addr)
        item: Dict[str, Any] = {k["remote_addr"]: conn.remote_addr}
        if conn.local_port is not None:
            _require(rules.check_port(conn.local_port, low=0), f"{path}.local_port", conn.local_port)
            item[k["local_port"]] = conn.local_port
        if conn.local_interface:
            item[k["local_interface"]] = conn.local_interface
        return item

    def _network(self, name: str, value: NetworkStats) -> Dict[str, Any]:
        k = self._k
        counts = (value.bytes_in, value.bytes_out, value.packets_in, value.packets_out)
        if all(type(n) is int and n >= 0 for n in counts):  # the common case
            return dict(zip(self._network_keys, counts))
        out: Dict[str, Any] = {}
        for field_name in _NETWORK_FIELDS:
            number = getattr(value, field_name)
            _require(rules.check_count(number), f"metrics.{name}.{field_name}", number)
            out[k[field_name]] = number
        return out

    def _custom_block(
        self, custom: Mapping[str, CustomValue], dropped: List[Violation], unusual: List[str]
    ) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for name in sorted(custom):
            definition = self.custom_metrics.get(name)
            if definition is None:
                dropped.append(Violation(f"custom_metrics.{name}", "not declared in custom_metrics", custom[name], name))
                continue
            try:
                wrapped, odd = self._custom_value(definition, custom[name], name)
            except ReportError as exc:
                dropped.extend(Violation(v.path, v.rule, v.value, name) for v in exc.violations)
                continue
            if odd:
                unusual.append(name)
            out[name] = [wrapped]
        return out

    def _custom_value(self, definition: CustomMetricConfig, value: Any, name: str) -> Tuple[Dict[str, Any], bool]:
        mtype = definition.type
        key = mtype.value_key
        path = f"custom_metrics.{name}[0].{key}"
        value = rules.normalize_value(value, mtype)
        problem = rules.check_value(value, mtype, allow_any_characters=definition.allow_any_characters)
        if problem is not None:
            where = path if problem.index is None else f"{path}[{problem.index}]"
            raise ReportError([Violation(where, problem.rule, problem.item)])
        if mtype is MetricType.NUMBER:
            return {key: value}, False
        if len(value) > self.max_list_items:
            raise ReportError(
                [Violation(path, f"list has {len(value)} items; the cap is {self.max_list_items}", len(value))]
            )
        odd = definition.allow_any_characters and not rules.all_plain_strings(value)  # sent under the opt-in
        return {key: list(value)}, odd


def _port_order(port: Any) -> Tuple[int, str]:
    return (port.port, port.interface or "")


def _connection_order(conn: Any) -> Tuple[str, int, str]:
    return (conn.remote_addr, conn.local_port or 0, conn.local_interface or "")


_NETWORK_FIELDS = ("bytes_in", "bytes_out", "packets_in", "packets_out")


def _require_count(total: Any, path: str) -> None:
    if type(total) is not int or total < 0:
        _require(rules.check_count(total), path, total)


def _require(problem: Optional[str], path: str, value: Any) -> None:
    if problem is not None:
        raise ReportError([Violation(path, problem, value)])


def first_violations(violations: Sequence[Violation], limit: int = 5) -> str:
    shown = "; ".join(str(v) for v in violations[:limit])
    more = len(violations) - limit
    return shown + (f"; and {more} more" if more > 0 else "")
