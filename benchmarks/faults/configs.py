"""Scenario ``configs``: generated configs against the loader.

Each config is a seeded mutation of a valid one (keys dropped, renamed, odd scalars, duplicated list
items) or of its YAML text (cut, bytes changed, lines dropped or re-indented, YAML bombs and
oddities appended); every one must be accepted or refused with a ConfigError naming file and path,
within 5 s.

Overlaps tests/config/test_config_fuzz.py (the same check on hypothesis-generated documents, run
by `make test`); what this adds is the scale (10,000), the mutations of a complete valid config and
of its text, the YAML bombs, and the 5 s hang guard.
"""

from __future__ import annotations

import random
import string
import traceback
from typing import Any, Dict, List, Tuple

import yaml

from agent.config.load import parse_config
from agent.errors import ConfigError
from benchmarks.faults.harness import SEED, Scenario, feed, scenario

GOAL = (  # the record's promise; {count} is the number of runs
    "{count:,} generated configs: every one accepted or refused with a ConfigError naming file and path; 0 "
    "tracebacks, 0 hangs"
)

VALID_CONFIG: Dict[str, Any] = {
    "thing_name": "gateway-01",
    "mqtt": {
        "endpoint": "127.0.0.1",
        "port": 8883,
        "cert": "/etc/defender-agent/certs/device.pem.crt",
        "key": "/etc/defender-agent/certs/private.pem.key",
        "ca": "/etc/defender-agent/certs/AmazonRootCA1.pem",
        "keep_alive": "60s",
    },
    "report": {
        "format": "cbor",
        "key_names": "short",
        "interval": "5m",
        "jitter": "15s",
        "max_list_items": 500,
    },
    "delivery": {"backlog": "fold", "reply_timeout": "30s", "max_outbox_bytes": "16MiB"},
    "state_dir": "/var/lib/defender-agent",
    "log_level": "info",
    "custom_metrics": {
        "cpu_usage": {"type": "number", "display_name": "CPU usage"},
        "services": {"type": "string-list"},
        "peers": "ip-address-list",
        "load_average": "number-list",
    },
    "collectors": [
        {"type": "listening_ports"},
        {"type": "tcp_connections"},
        {"type": "network_stats", "exclude_interfaces": ["lo"]},
        {"type": "system", "interval": "5m", "metrics": ["cpu_usage", "load_average"]},
    ],
}

ODD_SCALARS: List[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**64,
    1e400,
    float("nan"),
    "",
    " ",
    "10s",
    "5x",
    "-1s",
    "0s",
    "1e9d",
    "json",
    "cbor",
    "short",
    "long",
    "newest",
    "all",
    "number",
    "number-list",
    "aws:cpu",
    "a" * 300,
    "127.0.0.1",
    "::1",
    "\u00e9\u4e2d",
    "\x00",
    "${HOME}",
    "~/x",
    "../../etc/passwd",
    "16MiB",
    "-5MiB",
    [],
    {},
    [1, 2],
    {"a": 1},
]

YAML_NASTIES = [
    "a: &a [*a, *a]\n",
    "x: !!python/object/apply:os.system ['true']\n",
    "x: !!binary AAAA\n",
    "? [a, b]\n: c\n",
    "thing_name: gw\nthing_name: gw2\n",
    "a: &x [" + ", ".join(["*x"] * 0) + "1]\nb: *x\n",
    "laughs: &l0 [x, x]\n" + "".join(f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]\n" for i in range(1, 20)),
    "\ufeffthing_name: gw\n",
    "%YAML 1.1\n---\nthing_name: gw\n...\n---\nthing_name: x\n",
    "[" * 1000 + "]" * 1000,
    "{" * 1000,
    "thing_name: '\\x00'\n",
    "\t\tthing_name: gw\n",
    "thing_name: !!int 12\n",
    "mqtt: {endpoint: <<: *missing}\n",
]


def _mutate_structure(doc: Any, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(doc, dict) and doc:
        doc = dict(doc)
        key = rng.choice(list(doc))
        roll = rng.random()
        if roll < 0.2:
            del doc[key]
        elif roll < 0.35:
            doc[rng.choice([key + "s", key[:-1], key.upper(), "".join(rng.sample(key, len(key)))])] = doc.pop(
                key
            )
        elif roll < 0.6 and depth < 4:
            doc[key] = _mutate_structure(doc[key], rng, depth + 1)
        else:
            doc[key] = rng.choice(ODD_SCALARS)
        return doc
    if isinstance(doc, list) and doc:
        doc = list(doc)
        index = rng.randrange(len(doc))
        roll = rng.random()
        if roll < 0.3:
            doc.append(doc[index])  # duplicates (e.g. two collectors with one name)
        elif roll < 0.6 and depth < 4:
            doc[index] = _mutate_structure(doc[index], rng, depth + 1)
        else:
            doc[index] = rng.choice(ODD_SCALARS)
        return doc
    return rng.choice(ODD_SCALARS)


def _mutate_text(text: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.2:
        return text[: rng.randrange(len(text) + 1)]
    if roll < 0.4:
        chars = list(text)
        for _ in range(rng.randint(1, 8)):
            chars[rng.randrange(len(chars))] = rng.choice(string.printable + "\u00e9\x00\x7f\ufffd")
        return "".join(chars)
    if roll < 0.55:
        lines = text.splitlines()
        i = rng.randrange(len(lines))
        if rng.random() < 0.5:
            del lines[i]
        else:
            lines.insert(i, lines[i])
        return "\n".join(lines)
    if roll < 0.7:
        lines = text.splitlines()
        i = rng.randrange(len(lines))
        lines[i] = " " * rng.randint(0, 7) + lines[i].lstrip()
        return "\n".join(lines)
    if roll < 0.85:
        return text + rng.choice(YAML_NASTIES)
    return rng.choice(YAML_NASTIES)


def generated_configs(count: int, valid: Dict[str, Any] = VALID_CONFIG, seed: int = SEED) -> List[str]:
    rng = random.Random(seed)
    base = yaml.safe_dump(valid, sort_keys=False)
    out = [base]
    while len(out) < count:
        if rng.random() < 0.55:
            doc = valid
            for _ in range(rng.randint(1, 4)):
                doc = _mutate_structure(doc, rng)
            try:
                out.append(yaml.safe_dump(doc, sort_keys=False, allow_unicode=rng.random() < 0.5))
            except (yaml.YAMLError, ValueError):
                continue
        else:
            out.append(_mutate_text(base, rng))
    return out


@scenario("generated configs", (1000, 10_000), GOAL)
def run(sc: Scenario, count: int) -> None:
    base = dict(VALID_CONFIG)
    try:
        parse_config(yaml.safe_dump(base), "base.yaml")
    except ConfigError as exc:  # collector types not on this branch yet: mutate a config without them
        base.pop("collectors")
        sc.goal += f" (base config without collectors: {exc.problems[0].message})"

    def parse(index: int, text: str) -> str:
        try:
            parse_config(text, "gen.yaml")
        except ConfigError as exc:
            if not exc.problems or any(p.file != "gen.yaml" or not p.message for p in exc.problems):
                sc.fail(f"config #{index}: ConfigError without a usable problem: {exc!r}")
            return "refused (ConfigError)"
        return "accepted"

    def hang(index: int, text: str) -> str:
        return f"config #{index}: parse took over 5 s:\n{text[:500]}"

    def crash(index: int, text: str, _exc: Exception) -> Tuple[str, str]:
        return f"config #{index}:\n{text[:500]}\n{traceback.format_exc(limit=6)}", "traceback"

    feed(sc, generated_configs(count, base), parse, hang, crash)
