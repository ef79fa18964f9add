"""The textfile sink read by a real node_exporter: Debian's ``prometheus-node-exporter``, textfile collector only.

A real ``defender-agent run`` (textfile sink only, a 2 s interval, real collectors on this machine)
writes into a temp directory; node_exporter serves that directory on a free loopback port. Over
about a minute of rounds every scrape must show ``node_textfile_scrape_error 0`` (node_exporter
read every ``*.prom`` file without an error), the agent's families, and a newer round than the
scrape before (the report id and the sink's delivered counter go up): the atomic rename never
shows node_exporter half a file, and no round writes something its parser refuses.

The binary: ``$DEFENDER_AGENT_NODE_EXPORTER`` (``make test`` sets it after ``make node-exporter``
unpacked Debian's package into build/debian-tools/), else the installed /usr/bin one, else the
unpacked one. Missing, the test skips, unless ``$DEFENDER_AGENT_NODE_EXPORTER`` is set: under
``make test`` a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devkit.broker import free_port, port_open
from devkit.rig import wait_until
from tests.procs import plain_env

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
ENV = "DEFENDER_AGENT_NODE_EXPORTER"
CANDIDATES = (Path("/usr/bin/prometheus-node-exporter"),
              ROOT / "build/debian-tools/prometheus-node-exporter/usr/bin/prometheus-node-exporter")
SCRAPES = 30  # one per round at a 2 s interval: about a minute
INTERVAL = 2

# Families the agent writes every round (device-side metrics from this machine's /proc, and its own health).
FAMILIES = ("defender_agent_aws_all_bytes_out", "defender_agent_aws_num_listening_tcp_ports",
            "defender_agent_report_id", "defender_agent_last_round_timestamp_seconds",
            "defender_agent_collector_success", "defender_agent_sink_delivered_total",
            "defender_agent_cpu_usage", "defender_agent_load_average")

# Every value kind that reaches the file: counts, ports (labels), cidrs, a number, numbers, strings.
COLLECTORS = """collectors:
  - type: listening_ports
  - type: network_stats
  - type: tcp_connections
  - type: system
    metrics: [cpu_usage, load_average, process_count, logged_in_users]
custom_metrics:
  cpu_usage: {type: number}
  load_average: {type: number-list}
  process_count: {type: number}
  logged_in_users: {type: string-list}
"""

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def node_exporter_binary() -> Path:
    named = os.environ.get(ENV)
    if named:
        path = Path(named)
        assert os.access(path, os.X_OK), f"${ENV} names {path}, which is not an executable: run `make node-exporter`"
        return path
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    pytest.skip("Debian's prometheus-node-exporter is not here: `make node-exporter` unpacks it "
                "(make test does, and then a missing binary fails)")


def agent_command() -> List[str]:
    script = Path(sys.executable).parent / "defender-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent"]


@pytest.fixture
def textfile_dir(tmp_path: Path) -> Path:
    path = tmp_path / "textfile_collector"
    path.mkdir()
    return path


@pytest.fixture
def node_exporter(textfile_dir: Path, tmp_path: Path) -> Iterator[int]:
    binary = node_exporter_binary()
    port = free_port()
    log = open(tmp_path / "node_exporter.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(binary), "--collector.disable-defaults", "--collector.textfile",
                             f"--collector.textfile.directory={textfile_dir}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        assert wait_until(lambda: proc.poll() is not None or port_open(port), 20) and proc.poll() is None, \
            (tmp_path / "node_exporter.log").read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> Optional[float]:
    return samples.get((name, tuple(sorted(labels.items()))))


def news(samples: Samples, last: Optional[float]) -> Optional[Samples]:
    """The scrape, once it shows a round after ``last`` or a scrape error (which the test then names)."""
    if value(samples, "node_textfile_scrape_error") != 0:
        return samples
    report_id = value(samples, "defender_agent_report_id")
    return samples if report_id is not None and report_id != last else None


def newer_scrape(port: int, last: Optional[float]) -> Optional[Samples]:
    return news(scrape(port), last)


def test_node_exporter_reads_every_round_of_a_real_agent_without_a_scrape_error(
        node_exporter: int, textfile_dir: Path, tmp_path: Path) -> None:
    prom = textfile_dir / "defender_agent.prom"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"thing_name: gw-node-exporter\nreport: {{interval: {INTERVAL}s, jitter: 0s}}\n"
                   f"state_dir: {tmp_path / 'state'}\nsinks:\n  - {{type: textfile, path: '{prom}'}}\n" + COLLECTORS)
    log_path = tmp_path / "agent.log"
    with open(log_path, "wb") as log:
        agent = subprocess.Popen([*agent_command(), "run", "--config", str(cfg)], stdout=log, stderr=log,
                                 env=plain_env(PYTHONUNBUFFERED="1"), cwd=str(tmp_path))
        try:
            assert wait_until(prom.exists, 30), log_path.read_text()
            seen: List[Tuple[float, float]] = []  # (report id, textfile deliveries) per scrape
            for _ in range(SCRAPES):
                last = seen[-1][0] if seen else None
                samples = wait_until(functools.partial(newer_scrape, node_exporter, last), 10 * INTERVAL)
                assert samples, f"no new round within {10 * INTERVAL} s: {log_path.read_text()}"
                assert value(samples, "node_textfile_scrape_error") == 0, "node_exporter could not read a file"
                assert value(samples, "node_textfile_mtime_seconds", file=str(prom)) is not None \
                    or value(samples, "node_textfile_mtime_seconds", file=prom.name) is not None, \
                    "node_exporter read the agent's file"
                names = {name for name, _ in samples}
                missing = [f for f in FAMILIES if f not in names]
                assert not missing, f"families not served: {missing}"
                report_id = value(samples, "defender_agent_report_id")
                delivered = value(samples, "defender_agent_sink_delivered_total", sink="textfile", type="textfile")
                assert report_id is not None and delivered is not None
                seen.append((report_id, delivered))
            assert agent.poll() is None, log_path.read_text()
        finally:
            agent.terminate()
            agent.wait(15)
    ids = [rid for rid, _ in seen]
    counts = [n for _, n in seen]
    assert ids == sorted(ids) and len(set(ids)) == SCRAPES, "every scrape saw a newer round"
    assert counts == sorted(counts) and counts[-1] > counts[0], "the delivered counter goes up"
    assert agent.returncode == 0, log_path.read_text()
    assert "Traceback" not in log_path.read_text()
