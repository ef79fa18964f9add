"""The `sinks` and `mqtt` parts of agent.yaml (the loader's helpers): which sinks, and whether a broker is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from agent.catalog import HEALTH_METRICS
from agent.config.model import (
    DEFAULT_SINKS,
    VIOLATIONS_QUEUE,
    CustomMetricConfig,
    MqttConfig,
    SinkConfig,
    SinkType,
    TopicDocument,
    ViolationsConfig,
)
from agent.config.pkcs11_uri import UriError
from agent.config.pkcs11_uri import parse as parse_pkcs11_uri
from agent.config.spec import MQTT, SINK_COMMON, SINK_OPTIONS
from agent.schema import Checker, Section, join
from agent.sinks.textfile import name_clashes
from agent.sinks.topics import metric_level_problem, topic_problem


def check_mqtt(raw: Any, sinks: Tuple[SinkConfig, ...], checker: Checker, events_topic: bool = False
               ) -> Optional[MqttConfig]:
    """The mqtt section; it may be left out only when nothing publishes (textfile sinks, no violations.topic)."""
    if raw is None:
        brokered = [s.name for s in sinks if s.needs_broker]
        needing = [f"sink(s) {', '.join(brokered)}"] if brokered else []
        if events_topic:
            needing.append("violations.topic")
        if not needing:
            return None
        checker.problem("mqtt", f"required key is missing: {' and '.join(needing)} publish over MQTT "
                                "(only a config whose sinks are all textfile may leave mqtt out)")
        return None
    result: Optional[MqttConfig] = MQTT.check(raw, "mqtt", checker)
    if result is not None:
        check_token_keys(result, checker)
    return result


def check_token_keys(mqtt: MqttConfig, checker: Checker) -> None:
    """A ``pkcs11:`` key is a URI awscrt can use and comes with its module and PIN file; a file key has neither."""
    given = [name for name in ("pkcs11_library", "pkcs11_pin_file") if getattr(mqtt, name) is not None]
    if not mqtt.on_token:
        for name in given:
            checker.problem(join("mqtt", name), "is only used with a key held by a PKCS#11 token "
                                                "(key: \"pkcs11:token=LABEL;object=LABEL\"); remove it or use such a key")
        return
    try:
        parse_pkcs11_uri(mqtt.key)
    except UriError as exc:
        checker.problem("mqtt.key", f"{mqtt.key!r} is not a PKCS#11 URI awscrt can use: {exc}")
    for name in ("pkcs11_library", "pkcs11_pin_file"):
        if name not in given:
            what = ("the token's PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so" if name == "pkcs11_library"
                    else "the file holding the token's user PIN, e.g. /etc/defender-agent/pkcs11-pin")
            checker.problem(join("mqtt", name), f"required key is missing: a pkcs11: key needs {what}")


def check_sinks(raw: Any, checker: Checker) -> Tuple[SinkConfig, ...]:
    """The sinks; absent means the one defender sink (the behaviour before sinks existed)."""
    if raw is None:
        return DEFAULT_SINKS
    if not isinstance(raw, list) or not raw:
        checker.problem("sinks", "expected a non-empty list of sinks, each {type: defender|topic|textfile, ...}")
        return DEFAULT_SINKS
    out: List[SinkConfig] = []
    names: Dict[str, str] = {}
    files: Dict[Path, str] = {}  # a textfile's path -> the YAML path of the sink that writes it
    for index, entry in enumerate(raw):
        path = join("sinks", index)
        if not isinstance(entry, dict):
            checker.problem(path, "expected a mapping like {type: topic, topic: ...}")
            continue
        kind = SINK_COMMON["type"].check(entry.get("type"), join(path, "type"), checker) if "type" in entry else None
        if kind is None:
            if "type" not in entry:
                checker.problem(join(path, "type"), "required key is missing (defender, topic or textfile)")
            continue
        before = len(checker.problems)
        values = Section(fields={**SINK_COMMON, **SINK_OPTIONS[kind]}).check_fields(entry, path, checker, ())
        if len(checker.problems) != before:
            continue
        name = values["name"] or kind.value
        if name == VIOLATIONS_QUEUE:
            checker.problem(join(path, "name"), f"{name!r} is the outbox queue of the violation events; "
                                                "give the sink another name")
            continue
        if name in names:
            checker.problem(join(path, "name"), f"duplicate sink name {name!r} (also {names[name]}); "
                                                "give each a distinct `name:`")
            continue
        names[name] = path
        if kind is SinkType.DEFENDER and any(s.type is SinkType.DEFENDER for s in out):
            checker.problem(path, "only one defender sink: Device Defender takes one report per round")
            continue
        if kind is SinkType.TOPIC:
            per_metric = values.get("document") is TopicDocument.PER_METRIC
            problem = topic_problem(values["topic"], "" if per_metric else None)  # the metric's length: later
            if problem is not None:
                checker.problem(join(path, "topic"), f"{values['topic']!r} {problem}")
                continue
        if kind is SinkType.TEXTFILE and not str(values["path"]).endswith(".prom"):
            checker.problem(join(path, "path"), f"{values['path']!r} must end in .prom: node_exporter's textfile "
                                                "collector reads only *.prom files")
            continue
        if kind is SinkType.TEXTFILE:
            file = Path(values["path"])  # "/a//b.prom" and "/a/./b.prom" are one file ("..": symlinks may differ)
            if file in files:
                checker.problem(join(path, "path"), f"{values['path']!r} is also the path of {join(files[file], 'path')}; "
                                                    "two textfile sinks would overwrite each other's file")
                continue
            files[file] = path
        out.append(SinkConfig(
            type=kind, name=name, topic=values.get("topic"), document=values.get("document") or SinkConfig.document,
            path=Path(values["path"]) if values.get("path") else None,
            max_pending=values.get("max_pending") or SinkConfig.max_pending, yaml_path=path,
        ))
    return tuple(out) or DEFAULT_SINKS


def check_metric_topics(sinks: Tuple[SinkConfig, ...], names: Iterable[str], checker: Checker) -> None:
    """A `per-metric` sink's topic with every metric this config can send (``names``: cloud names): each
    must be a topic level as it is, and the longest must fit AWS IoT's 256 bytes with the longest thing name."""
    metrics = sorted(set(names))
    for sink in sinks:
        if sink.document is not TopicDocument.PER_METRIC or sink.topic is None:
            continue
        path = join(sink.yaml_path, "topic")
        unsafe = [(name, metric_level_problem(name)) for name in metrics if metric_level_problem(name)]
        for name, why in unsafe:
            checker.problem(path, f"metric {name!r} cannot fill {{metric}}: it {why}; rename the metric")
        longest = max((m for m in metrics if not metric_level_problem(m)), key=lambda m: len(m.encode("utf-8")),
                      default="")
        problem = topic_problem(sink.topic, longest)
        if problem is not None:
            checker.problem(path, f"{sink.topic!r} {problem}")


def declare_health_metrics(metrics: Dict[str, CustomMetricConfig], checker: Checker) -> None:
    """``health_metrics: custom_metrics`` declares the agent_* metrics; a declaration of one by hand must agree."""
    for name, builtin in HEALTH_METRICS.items():
        declared = metrics.get(name)
        if declared is None:
            metrics[name] = CustomMetricConfig(type=builtin.type, unit=builtin.unit, description=builtin.description,
                                               name=name)
        elif declared.type is not builtin.type:
            checker.problem(join(join("custom_metrics", name), "type"),
                            f"is {declared.type.value}, but health_metrics sends it as a {builtin.type.value}")


def check_textfile_names(sinks: Tuple[SinkConfig, ...], metrics: Mapping[str, CustomMetricConfig],
                          checker: Checker) -> None:
    """Two metric names that the textfile would write under one Prometheus name."""
    for index, sink in enumerate(sinks):
        if sink.type is SinkType.TEXTFILE:
            for first, second in name_clashes(metrics):
                checker.problem(join(join("sinks", index), "path"),
                                f"{_what(first)} and custom metric {second!r} would share one Prometheus name in "
                                "the textfile; rename the custom metric")
            return


def _what(name: str) -> str:
    if name.startswith("aws:"):
        return f"the device-side metric {name!r}"
    if name.startswith("defender_agent_"):
        return f"the agent's health metric {name!r}"
    return f"custom metric {name!r}"


def check_violations(violations: ViolationsConfig, checker: Checker) -> None:
    """The events' topic follows a topic sink's rules (the program's path is the schema's Argv, its file is
    checked at start)."""
    if violations.topic is not None:
        problem = topic_problem(violations.topic)
        if problem is not None:
            checker.problem("violations.topic", f"{violations.topic!r} {problem}")
