"""The schema of agent.yaml: every key, its type, default and one-line description."""

from __future__ import annotations

from typing import Dict

from agent.catalog import KeyNames, MetricType, PayloadFormat
from agent.config.model import (
    LINK_ACK_TIMEOUT,
    BacklogMode,
    DeliveryConfig,
    HealthMetrics,
    LogLevel,
    MqttConfig,
    MqttProtocol,
    ReportConfig,
    ShadowConfig,
    SinkType,
    TopicDocument,
    ViolationsConfig,
)
from agent.schema import (
    REQUIRED,
    Argv,
    Bool,
    Duration,
    Enum,
    Int,
    MapOf,
    Node,
    PathStr,
    Section,
    Size,
    Str,
)

# The CreateThing thingName rule (AWS IoT API reference): it is also a level of the report topic,
# so a name outside it (`gw+1`, `gw/1`) would make the subscribe fail at run time.
THING_NAME = Str(
    doc="AWS IoT thing name of this gateway (1 to 128 of A-Z a-z 0-9 : _ -, as CreateThing allows); "
    "the report topic and (by default) the MQTT client id.",
    default=REQUIRED,
    example="gateway-01",
    pattern=r"[a-zA-Z0-9:_-]{1,128}",
    pattern_hint="must be 1 to 128 of A-Z a-z 0-9 : _ - (the AWS IoT thing name rule)",
)

# AWS IoT Core: a client id is at most 128 bytes; MQTT wildcards and `/` have no place in it.
CLIENT_ID = Str(
    doc="MQTT client id (at most 128 bytes; no + # or /); defaults to thing_name.",
    default=None,
    max_bytes=128,
    pattern=r"[^+#/\x00-\x1f\x7f]+",
    pattern_hint="must not contain + # / or control characters",
)

MQTT = Section(
    doc="Connection to AWS IoT Core (or a local broker) over MQTT with mutual TLS; needed by the defender and "
    "topic sinks (a config with only textfile sinks may leave it out).",
    model=MqttConfig,
    fields={
        "endpoint": Str(
            doc="Your account's AWS IoT data endpoint (aws iot describe-endpoint --endpoint-type iot:Data-ATS).",
            default=REQUIRED,
            example="xxxxxxxxxxxxxx-ats.iot.eu-west-1.amazonaws.com",
        ),
        "port": Int(doc="TLS port of the endpoint.", default=8883, min=1, max=65535),
        "client_id": CLIENT_ID,
        "protocol": Enum(doc="MQTT protocol version.", default=MqttProtocol.MQTT5, of=MqttProtocol),
        "cert": PathStr(
            doc="Device certificate (PEM).",
            default=REQUIRED,
            example="/etc/defender-agent/certs/device.pem.crt",
        ),
        "key": PathStr(
            doc="Device private key (PEM); mode 600, owned by root or the agent's user. Under systemd "
            "(LoadCredential=) the copy in $CREDENTIALS_DIRECTORY with the same file name is read, and this "
            "file is still checked: readable by others, the service exits 78. Or a key held by a TPM 2.0 or "
            "another PKCS#11 token: an RFC 7512 URI, pkcs11:token=LABEL;object=LABEL (slot-id=N also "
            "selects the token), with pkcs11_library and pkcs11_pin_file.",
            default=REQUIRED,
            example="/etc/defender-agent/certs/private.pem.key",
        ),
        "ca": PathStr(
            doc="CA bundle that signs the endpoint's certificate (AmazonRootCA1.pem).",
            default=REQUIRED,
            example="/etc/defender-agent/certs/AmazonRootCA1.pem",
        ),
        "connect_timeout": Duration(doc="Log a warning when a connection takes longer.", default=10.0, min=1),
        "keep_alive": Duration(doc="MQTT keep-alive interval.", default=60.0, min=5, max=1200),
        "pkcs11_library": PathStr(
            doc="With a pkcs11: key: the token's PKCS#11 module, a regular file owned by root "
            "(SoftHSM: /usr/lib/softhsm/libsofthsm2.so; TPM 2.0: libtpm2_pkcs11.so from libtpm2-pkcs11-1).",
            default=None,
        ),
        "pkcs11_pin_file": PathStr(
            doc="With a pkcs11: key: the file holding the token's user PIN (one line), checked as the key "
            "file is (mode 600, owner, ACL); under systemd the LoadCredential= copy of the same file name. "
            "A wrong PIN exits 78 and is never tried again (a TPM locks out after a few).",
            default=None,
        ),
    },
)

REPORT = Section(
    doc="What a report looks like and how often one is sent.",
    model=ReportConfig,
    fields={
        "format": Enum(doc="Payload encoding (and topic suffix).", default=PayloadFormat.JSON, of=PayloadFormat),
        "key_names": Enum(doc="Long or short key names in the report.", default=KeyNames.LONG, of=KeyNames),
        "interval": Duration(
            doc="Time between reports. The service throttles faster than 5m; "
            "only a loopback endpoint may go lower (down to 1s, for local tests).",
            default=300.0,
            min=1,
            max=86400,
        ),
        "jitter": Duration(
            doc="Random delay up to this long added to every interval so a fleet does not publish in lockstep.",
            default=15.0,
            min=0,
            max=3600,
        ),
        "max_list_items": Int(
            doc="Cap on each list in a report. Ports and connections over it keep a deterministic subset "
            "and `total` stays the true count; a custom list over it is left out whole (logged), "
            "since a cut list of names or addresses would say something else.",
            default=500,
            min=1,
            max=5000,
        ),
    },
)

BACKLOG_ALL_REMOVED = (
    "the service takes every report as current (historical reports are not supported) and throttles more than "
    "one report per 5 minutes, so a drained backlog arrived as a burst of 'current' reports; use newest "
    "(the default) or fold"
)

DELIVERY = Section(
    doc="The durable outbox and how pending reports are (re)sent.",
    model=DeliveryConfig,
    fields={
        "backlog": Enum(
            doc="After an outage only the newest pending report is sent (the service takes every report "
            "as current): `newest` leaves the older ones' network deltas out (logged, so no report shows an "
            "outage's traffic as one interval's); `fold` adds them to the newest report.",
            default=BacklogMode.NEWEST,
            of=BacklogMode,
            removed={"all": BACKLOG_ALL_REMOVED},
        ),
        "reply_timeout": Duration(
            doc="Publish the same report again when no accepted/rejected reply came within this time.",
            default=30.0,
            min=1,
        ),
        "retry_max_delay": Duration(doc="Cap on the backoff between resends.", default=600.0, min=1),
        "max_attempts": Int(
            doc="Publishes of one report without a reply before it ends as `unanswered`; a report also ends "
            "`unanswered` as soon as a newer one is published (report ids only go up on the wire).",
            default=5,
            min=1,
            max=100,
        ),
        "message_ack_timeout": Duration(
            doc="Publish a topic sink's message or a violation event again when its PUBACK has not come within "
            f"this time; longer than the link's own {LINK_ACK_TIMEOUT} s wait, so a message awscrt still awaits "
            "is never sent twice.",
            default=60.0,
            min=LINK_ACK_TIMEOUT + 1,
            max=3600,
        ),
        "message_retry_max_delay": Duration(
            doc="Cap on the backoff after a message's publish failed without the broker's answer (from 5 s, "
            "doubling), and how long a topic the connection keeps dropping on is held back.",
            default=300.0,
            min=1,
        ),
        "max_outbox_bytes": Size(
            doc="Upper bound of the outbox in bytes (SQLite's pages in use): pending reports, topic messages, "
            "violation events and the ledger together. Past it the ledger's oldest entries go first, then the oldest "
            "report or message (counted per sink); the newest report always stays. On disk the WAL adds at most an "
            "eighth of it (64 KiB to 4 MiB), plus SQLite's 32 KiB shared-memory file and twice one round's writes.",
            default=16 * 1024 * 1024,
            min=256 * 1024,
        ),
        "min_free_disk": Size(
            doc="While the state_dir filesystem has less free space, the outbox stops growing: the oldest report "
            "or message makes room for the new one.",
            default=32 * 1024 * 1024,
            min=0,
        ),
    },
    removed={"drain_interval": "it paced `backlog: all`, which is gone; " + BACKLOG_ALL_REMOVED},
)

CUSTOM_METRIC = Section(
    doc="A custom metric definition (registered in the cloud by `defender-agent bootstrap`).",
    fields={
        "type": Enum(
            doc="Device Defender type; cannot change once registered.",
            default=REQUIRED,
            of=MetricType,
        ),
        "display_name": Str(doc="Friendly name shown in the console (up to 128 characters).", max_bytes=128),
        "unit": Str(doc="Unit, for people (not sent to the service)."),
        "description": Str(doc="What the metric means, for people (not sent to the service)."),
        "tags": MapOf(doc="Tags set on the metric when it is created.", default={}),
        "allow_any_characters": Bool(
            doc="string-list only: send strings outside the service's documented character set "
            "(warned once) instead of refusing them.",
            default=False,
        ),
    },
)

VIOLATIONS = Section(
    doc="Where the violation events of `behaviors` go (docs/BEHAVIORS.md).",
    model=ViolationsConfig,
    fields={
        "topic": Str(
            doc="MQTT topic of the events (QoS 1, through the outbox; the rules of a topic sink's topic); "
            "{thing_name} is filled in. Unset: events go only to the journal, status and exec.",
            example="dt/gateways/{thing_name}/violations",
        ),
        "exec": Argv(
            doc="Program run once per event with the event as JSON on stdin: an absolute path, no shell, "
            "owned by root or the agent's user and not group/world-writable (the exec collector's rules).",
            default=[],
            item=Str(),
            allow_empty=True,
        ),
        "exec_timeout": Duration(doc="The program is killed after this long.", default=10.0, min=0.1, max=600),
        "security_profile_name": Str(
            doc="securityProfileName of the events (e.g. the profile the behaviors were pulled from).",
            default="local",
            pattern=r"[a-zA-Z0-9:_-]{1,128}",
            pattern_hint="must be 1 to 128 of a-z A-Z 0-9 : _ - (a security profile name)",
        ),
        "max_pending": Int(
            doc="Events kept in the outbox while the broker is away; the oldest go first (counted as dropped).",
            default=1000,
            min=1,
            max=100000,
        ),
    },
)

# AWS IoT named shadows: a name is 1 to 64 of these characters (device-shadow-mqtt; SPEC.md, Named shadow).
SHADOW = Section(
    doc="A named shadow of this thing whose `reported` state the agent keeps current (version, health, behaviors "
    "in alarm, outbox, remote config) so fleet indexing can query the fleet (docs/FLEET.md). Absent: no shadow.",
    model=ShadowConfig,
    fields={
        "name": Str(
            doc="The shadow's name (1 to 64 of A-Z a-z 0-9 : _ -); the device policy must allow its topics "
            "(docs/FLEET.md, Device policy).",
            default=ShadowConfig.name,
            pattern=r"[a-zA-Z0-9:_-]{1,64}",
            pattern_hint="must be 1 to 64 of A-Z a-z 0-9 : _ - (the AWS IoT shadow name rule)",
        ),
        "remote_config": Bool(
            doc="Apply the allowed keys of the shadow's desired state (read at every connect and on every delta); "
            "false: desired is ignored and only reported is written (docs/FLEET.md, Remote config).",
            default=ShadowConfig.remote_config,
        ),
    },
)

HEALTH_METRICS = Enum(
    doc="`custom_metrics`: add the agent's own health (agent_collectors_failing, agent_failing_collectors, "
    "agent_outbox_pending, agent_seconds_since_accepted) to every round as custom metrics, so the defender and "
    "topic sinks carry it and a fleet can alarm on it; they are declared for you (bootstrap registers them).",
    default=HealthMetrics.OFF,
    of=HealthMetrics,
)

TOP_LEVEL = {
    "thing_name": THING_NAME,
    "mqtt": MQTT,
    "report": REPORT,
    "delivery": DELIVERY,
    "state_dir": PathStr(
        doc="Directory of the outbox (pending reports, the sinks' and violation events' messages, the ledger, the "
        "behaviors' alarm states, what `status` shows), the network counters and the report id reserve "
        "(systemd: StateDirectory).",
        default="/var/lib/defender-agent",
    ),
    "log_level": Enum(
        doc="Logging threshold (logs go to stderr, i.e. the journal).",
        default=LogLevel.INFO,
        of=LogLevel,
    ),
    "health_metrics": HEALTH_METRICS,
    "violations": VIOLATIONS,
    # `collectors`, `custom_metrics`, `sinks` and `behaviors` are checked by agent.config.load (they depend on each other).
}

COLLECTOR_COMMON = {
    "type": Str(doc="Collector type (built-in or plugin).", default=REQUIRED),
    "name": Str(
        doc="Unique name of this collector in logs and status; defaults to the type.",
        pattern=r"[A-Za-z0-9_.:-]{1,64}",
        pattern_hint="must be 1 to 64 of A-Z a-z 0-9 _ . : -",
    ),
    "interval": Duration(
        doc="Sample every this long (rounded up to a whole number of report intervals); default: every report.",
        min=1,
    ),
    "timeout": Duration(doc="Give up on one sample after this long.", default=10.0, min=0.01, max=3600),
}

LOOPBACK_HOSTS = ("localhost", "ip6-localhost")

SINK_COMMON = {
    "type": Enum(doc="Where each round's checked values go.", default=REQUIRED, of=SinkType),
    "name": Str(
        doc="Unique name of this sink in logs, status and metrics; defaults to the type.",
        pattern=r"[A-Za-z0-9_.:-]{1,64}",
        pattern_hint="must be 1 to 64 of A-Z a-z 0-9 _ . : -",
    ),
}

# Options by sink type (the `type` and `name` keys are common to all).
SINK_OPTIONS: Dict[SinkType, Dict[str, Node]] = {
    SinkType.DEFENDER: {},
    SinkType.TOPIC: {
        "topic": Str(
            doc="MQTT topic, QoS 1, on the same mTLS connection; {thing_name} is filled in, and {metric} (the "
            "metric's cloud name, required by and only for `document: per-metric`). "
            "$aws/rules/RULE_NAME/... is Basic Ingest (straight to a rule, no publish charge); other $ topics "
            "are reserved. At most 7 slashes (after a Basic Ingest prefix) and 256 bytes with a 128-character "
            "thing name and the longest metric name, no wildcards.",
            default=REQUIRED,
            example="dt/gateways/{thing_name}/metrics",
        ),
        "document": Enum(
            doc="`flat`: plain values under cloud metric names, for IoT rules (docs/SINKS.md); "
            "`report`: the exact Device Defender report document; `per-metric`: one message per numeric metric "
            "per round (a list as its item count) on a {metric} topic, for one CloudWatch rule for the whole fleet "
            "(docs/SINKS.md).",
            default=TopicDocument.FLAT,
            of=TopicDocument,
        ),
        "max_pending": Int(
            doc="Messages of this sink kept in the outbox while the broker is away; the oldest go first "
            "(counted as dropped). A `per-metric` sink makes one message per metric per round: size it as "
            "rounds x metrics.",
            default=1000,
            min=1,
            max=100000,
        ),
    },
    SinkType.TEXTFILE: {
        "path": PathStr(
            doc="Absolute path of the file written every round (atomically), in Prometheus text format; "
            "node_exporter's textfile collector reads *.prom files of its --collector.textfile.directory.",
            default=REQUIRED,
            example="/var/lib/node_exporter/textfile_collector/defender_agent.prom",
            pattern=r"/.*",  # a relative path would land in whatever directory `run` was started from
            pattern_hint="must be an absolute path",
        ),
    },
}
