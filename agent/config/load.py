"""Load and check agent.yaml: every problem at once, each with file, line and YAML path."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from agent.behaviors.check import check_behaviors
from agent.catalog import HEALTH_METRICS, METRIC_NAME, STANDARD_CLOUD_NAMES, BuiltinMetric, MetricType
from agent.collectors.builtin import default_registry
from agent.collectors.registry import Registry
from agent.config.model import (
    CollectorConfig,
    Config,
    CustomMetricConfig,
    HealthMetrics,
    MqttConfig,
    ReportConfig,
    ShadowConfig,
    SinkConfig,
    SinkType,
)
from agent.config.sinks import (
    check_metric_topics,
    check_mqtt,
    check_sinks,
    check_textfile_names,
    check_violations,
    declare_health_metrics,
)
from agent.config.source import read_config_text
from agent.config.spec import COLLECTOR_COMMON, CUSTOM_METRIC, LOOPBACK_HOSTS, SHADOW, TOP_LEVEL
from agent.config.yamlsrc import read_yaml
from agent.errors import ConfigError, ConfigProblem, PluginError
from agent.schema import Checker, Section, did_you_mean, format_duration, join

MIN_REMOTE_INTERVAL = 300.0
LOG = logging.getLogger("agent.config")


def load_config(path: str, registry: Optional[Registry] = None) -> Config:
    """Read and check the config file at ``path``. Raises ConfigError with every problem."""
    return parse_config(read_config_text(path), path, registry)


def parse_config(text: str, file: str = "<string>", registry: Optional[Registry] = None) -> Config:
    data, lines = read_yaml(text, file)
    checker = Checker(file, lines)
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}"
        raise ConfigError.single(file, "", f"the document is {what}; expected a mapping with thing_name, mqtt, ...")
    top = Section(fields={k: v for k, v in TOP_LEVEL.items() if k != "mqtt"})
    values = top.check_fields(data, "", checker,
                              extra_known=("mqtt", "collectors", "custom_metrics", "sinks", "behaviors", "shadow"))
    sinks = check_sinks(data.get("sinks"), checker)
    metrics = _check_custom_metrics(data.get("custom_metrics"), checker)
    if values["health_metrics"] is HealthMetrics.CUSTOM_METRICS:
        declare_health_metrics(metrics, checker)
    behaviors = check_behaviors(data.get("behaviors"), "behaviors", checker,
                                {name: m.type for name, m in metrics.items()})
    if values["violations"] is not None:
        check_violations(values["violations"], checker)
    events_topic = bool(behaviors and values["violations"] is not None and values["violations"].topic)
    values["mqtt"] = check_mqtt(data.get("mqtt"), sinks, checker, events_topic)
    shadow = _check_shadow(data.get("shadow"), data.get("mqtt") is None, checker)
    collectors, described, emitted = _check_collectors(data.get("collectors"), checker, registry or default_registry(),
                                                       metrics)
    _cross_checks(values, sinks, checker)
    check_metric_topics(sinks, cloud_names(emitted, metrics), checker)
    check_textfile_names(sinks, metrics, checker)
    if checker.problems:
        raise ConfigError(checker.problems)
    for warning in _timeout_warnings(data.get("collectors"), collectors, values["report"], checker):
        LOG.warning("%s", warning)
    return Config(
        thing_name=values["thing_name"],
        mqtt=values["mqtt"],
        report=values["report"],
        delivery=values["delivery"],
        state_dir=Path(values["state_dir"]),
        log_level=values["log_level"],
        collectors=tuple(collectors),
        custom_metrics=_with_catalog_text(metrics, {**described, **HEALTH_METRICS}),
        source=file,
        sinks=sinks,
        health_metrics=values["health_metrics"],
        behaviors=behaviors,
        violations=values["violations"],
        shadow=shadow,
    )


def _check_shadow(raw: Any, no_mqtt: bool, checker: Checker) -> Optional[ShadowConfig]:
    """The ``shadow`` section: absent (or empty) means no shadow; present, it needs the broker."""
    if raw is None:
        return None
    result: Optional[ShadowConfig] = SHADOW.check(raw, "shadow", checker)
    if result is not None and no_mqtt and not any(p.path == "mqtt" for p in checker.problems):
        checker.problem("mqtt", "required key is missing: the shadow is read and written over MQTT")
    return result


def _with_catalog_text(
    metrics: Dict[str, CustomMetricConfig], described: Mapping[str, BuiltinMetric]
) -> Dict[str, CustomMetricConfig]:
    """Fill each metric's unset ``unit`` and ``description`` from what its built-in collector computes."""
    out = dict(metrics)
    for name, builtin in described.items():
        metric = out.get(name)
        if metric is not None and builtin.type is metric.type:
            out[name] = dataclasses.replace(
                metric, unit=metric.unit or builtin.unit, description=metric.description or builtin.description
            )
    return out


def _check_custom_metrics(raw: Any, checker: Checker) -> Dict[str, CustomMetricConfig]:
    out: Dict[str, CustomMetricConfig] = {}
    if raw is None:
        return out
    if not isinstance(raw, dict):
        checker.problem("custom_metrics", "expected a mapping of metric name to {type: ...}")
        return out
    for name, raw_body in raw.items():
        path = join("custom_metrics", name)
        before = len(checker.problems)
        METRIC_NAME.check(name, path, checker)
        shorthand = isinstance(raw_body, str) and raw_body in {t.value for t in MetricType}
        body = {"type": raw_body} if shorthand else raw_body  # shorthand: `cpu_usage: number`
        values = CUSTOM_METRIC.check(body, path, checker)
        if len(checker.problems) != before or values is None:
            continue
        mtype = MetricType(values["type"])
        if values["allow_any_characters"] and mtype is not MetricType.STRING_LIST:
            checker.problem(join(path, "allow_any_characters"), "only applies to string-list metrics")
        out[name] = CustomMetricConfig(
            type=mtype,
            display_name=values["display_name"],
            unit=values["unit"],
            description=values["description"],
            tags=values["tags"] or {},
            allow_any_characters=values["allow_any_characters"],
            name=name,
        )
    return out


def _check_collectors(
    raw: Any,
    checker: Checker,
    registry: Registry,
    metrics: Mapping[str, CustomMetricConfig],
) -> Tuple[List[CollectorConfig], Dict[str, BuiltinMetric], Dict[str, Tuple[str, Optional[MetricType]]]]:
    """The checked collectors, what the built-in ones compute under each custom metric name, and every metric
    they emit (its name in the report -> its collector and custom type, None for a standard metric)."""
    out: List[CollectorConfig] = []
    described: Dict[str, BuiltinMetric] = {}
    names: Dict[str, str] = {}
    emitted: Dict[str, Tuple[str, Optional[MetricType]]] = {}
    if raw is None:
        return out, described, emitted
    if not isinstance(raw, list):
        checker.problem("collectors", "expected a list of collectors, each {type: ..., ...}")
        return out, described, emitted
    for index, entry in enumerate(raw):
        path = join("collectors", index)
        if not isinstance(entry, dict):
            checker.problem(path, "expected a mapping like {type: system, ...}")
            continue
        ctype = entry.get("type")
        if not isinstance(ctype, str):
            checker.problem(join(path, "type"), "required key is missing or not a string (the collector type)")
            continue
        try:
            spec = registry.get(ctype)
        except PluginError as exc:
            checker.problem(join(path, "type"), str(exc))
            continue
        if spec is None:
            hint = did_you_mean(ctype, registry.available())
            checker.problem(join(path, "type"), f"unknown collector type {ctype!r}{hint}; known: {', '.join(registry.available())}")
            continue
        before = len(checker.problems)
        section = Section(fields={**COLLECTOR_COMMON, **spec.options})
        values = section.check_fields(entry, path, checker, extra_known=())
        if len(checker.problems) != before:
            continue
        name = values.pop("name") or ctype
        if name in names:
            checker.problem(
                join(path, "name"),
                f"duplicate collector name {name!r} (also {names[name]}); give each a distinct `name:`",
            )
        names[name] = path
        options = {k: v for k, v in values.items() if k not in COLLECTOR_COMMON}
        try:
            emits = spec.emits(options)
        except Exception as exc:  # a plugin's emits() is outside code; name it
            checker.problem(path, f"collector type {ctype!r} ({spec.origin}) failed to list its metrics: {exc}")
            continue
        for metric, mtype in emits.items():
            _check_emitted(metric, mtype, name, path, metrics, emitted, checker)
        if spec.describes is not None:
            described.update(spec.describes(options))
        out.append(
            CollectorConfig(
                type=ctype,
                name=name,
                interval=values["interval"],
                timeout=values["timeout"],
                options=options,
                path=path,
            )
        )
    return out, described, emitted


def cloud_names(emitted: Mapping[str, Tuple[str, Optional[MetricType]]], metrics: Mapping[str, CustomMetricConfig]
                ) -> List[str]:
    """Every cloud name a round of this config can hold: the device-side metrics of the standard metrics the
    collectors emit (``network_stats`` -> ``aws:all-bytes-in``, ...) and every declared custom metric."""
    device = [cloud for name, (_, mtype) in emitted.items() if mtype is None
              for cloud in STANDARD_CLOUD_NAMES.get(name, ())]
    return device + list(metrics)


def _check_emitted(
    metric: str,
    mtype: Optional[MetricType],
    collector: str,
    path: str,
    metrics: Mapping[str, CustomMetricConfig],
    emitted: Dict[str, Tuple[str, Optional[MetricType]]],
    checker: Checker,
) -> None:
    if metric in emitted:
        checker.problem(path, f"metric {metric!r} is also emitted by collector {emitted[metric][0]!r}; each metric needs one source")
        return
    emitted[metric] = (collector, mtype)
    if mtype is None:
        return  # a standard metric: always known
    declared = metrics.get(metric)
    if declared is None:
        checker.problem(
            path,
            f"collector {collector!r} emits custom metric {metric!r}, which is not declared; "
            f"add `custom_metrics: {{{metric}: {{type: {mtype.value}}}}}`",
        )
    elif declared.type is not mtype:
        checker.problem(
            join(join("custom_metrics", metric), "type"),
            f"is {declared.type.value}, but collector {collector!r} emits a {mtype.value}",
        )


def _timeout_warnings(raw: Any, collectors: List[CollectorConfig], report: ReportConfig, checker: Checker
                      ) -> List[ConfigProblem]:
    """A ``timeout`` set at or above ``report.interval``: valid (the loop never waits for a collector, so the
    watchdog is fed whatever it does), but while that collector hangs each round waits that long for it,
    and the reports come late. A default timeout is not warned about: it was not chosen."""
    warnings = Checker(checker.file, checker.lines)  # a problem's shape (file, line, path), not an error
    for index, entry in enumerate(raw if isinstance(raw, list) else []):
        path = join("collectors", index)
        collector = next((c for c in collectors if c.path == path), None)
        if collector is None or not isinstance(entry, dict) or "timeout" not in entry:
            continue
        if collector.timeout >= report.interval:
            timeout, interval = format_duration(collector.timeout), format_duration(report.interval)
            warnings.problem(join(path, "timeout"), (
                f"{timeout} is not shorter than report.interval ({interval}): while collector {collector.name!r} "
                f"hangs, each round waits up to {timeout} for it, and its report comes that much later; "
                "a timeout under the interval keeps the reports on time"))
    return warnings.problems


def is_loopback(endpoint: str) -> bool:
    host = endpoint.strip("[]").lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cross_checks(values: Dict[str, Any], sinks: Tuple[SinkConfig, ...], checker: Checker) -> None:
    mqtt: Optional[MqttConfig] = values.get("mqtt")
    report: Optional[ReportConfig] = values.get("report")
    if mqtt is None or report is None or mqtt.endpoint is None or report.interval is None:
        return  # already reported, or no broker (only textfile sinks: no service throttles them)
    if not any(s.type is SinkType.DEFENDER for s in sinks):
        return  # the 5-minute throttle is Device Defender's; a topic of your own has none
    if report.interval < MIN_REMOTE_INTERVAL and not is_loopback(mqtt.endpoint):
        checker.problem(
            "report.interval",
            f"{format_duration(report.interval)} is under 5m; AWS IoT throttles faster reports "
            f"(only a loopback endpoint may go lower, for local tests)",
        )
