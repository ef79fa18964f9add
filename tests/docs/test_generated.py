"""The generated pages (config/agent.example.yaml, docs/CONFIGURATION.md, docs/COLLECTORS.md) are what the
code renders now, and every collector example in them is a config the real loader accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest
import yaml

from agent.cli import COMMANDS
from agent.collectors.builtin import builtin_specs
from agent.collectors.contract import CollectorSpec
from agent.config.load import load_config, parse_config
from agent.config.spec import TOP_LEVEL
from agent.docs import generate as docs
from agent.docs.collectors import EXAMPLE_BASE, example_config
from agent.docs.configuration import extra_sections
from agent.docs.markdown import short_doc
from agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SPECS = builtin_specs()


def test_the_checked_in_pages_are_current() -> None:
    stale = docs.stale_pages(ROOT)
    assert not stale, f"{', '.join(stale)} drifted from the code: run `make docs`"


def test_a_stale_or_missing_page_is_named(tmp_path: Path) -> None:
    assert docs.main([str(tmp_path)]) == 0
    assert docs.stale_pages(tmp_path) == []
    page = tmp_path / docs.COLLECTORS
    page.write_text(page.read_text().replace("| `protocols` |", "| `protocol` |"))
    (tmp_path / docs.EXAMPLE_CONFIG).unlink()
    assert docs.stale_pages(tmp_path) == [docs.EXAMPLE_CONFIG, docs.COLLECTORS]


def test_the_generator_needs_no_markers_in_the_readme() -> None:
    assert set(docs.pages()) == {docs.EXAMPLE_CONFIG, docs.CONFIGURATION, docs.COLLECTORS}


@pytest.mark.parametrize("spec", SPECS, ids=[spec.type for spec in SPECS])
def test_each_collector_documents_itself(spec: CollectorSpec) -> None:
    assert spec.doc.strip() and spec.sample.strip(), f"{spec.type}: give its CollectorSpec a doc and a sample"
    entries = yaml.safe_load(spec.sample)["collectors"]
    assert entries and {entry["type"] for entry in entries} == {spec.type}, "a sample shows its own type only"
    page = (ROOT / docs.COLLECTORS).read_text()
    section = page.split(f"\n## {spec.type}\n", 1)[1].split("\n## ", 1)[0]
    for option in spec.options:
        assert f"| `{option}` |" in section, f"{spec.type}.{option} is missing from {docs.COLLECTORS}"
    assert spec.sample.rstrip("\n") in section


@pytest.mark.parametrize("spec", SPECS, ids=[spec.type for spec in SPECS])
def test_each_collector_example_loads(spec: CollectorSpec, tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(example_config(spec))
    config = load_config(str(path))
    assert config.collectors and {c.type for c in config.collectors} == {spec.type}


def test_a_broken_example_fails_to_load(tmp_path: Path) -> None:
    """The check above can fail: the same sample with a misspelt option or an undeclared metric does not load."""
    system = next(spec for spec in SPECS if spec.type == "system")
    misspelt = example_config(system).replace("temperature_sensors:", "temperature_sensor:")
    undeclared = example_config(system).replace("  uptime_seconds: number\n", "")
    for text in (misspelt, undeclared):
        path = tmp_path / "agent.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError):
            load_config(str(path))


def _headings(page: str) -> List[str]:
    return re.findall(r"^#{2,3} (.+)$", page, flags=re.MULTILINE)


def test_configuration_has_every_key_and_command() -> None:
    page = (ROOT / docs.CONFIGURATION).read_text()
    headings = _headings(page)
    for name in TOP_LEVEL:
        assert f"`{name}`" in page
    for key in ("collectors", "custom_metrics", "sinks", "behaviors", *extra_sections()):
        assert key in headings, f"no section for `{key}` in {docs.CONFIGURATION}"
    for command in COMMANDS:
        assert f"| `defender-agent {command.name}` |" in page


def test_every_extra_section_is_a_key_the_loader_takes() -> None:
    """A Section of agent/config/spec.py outside TOP_LEVEL (such as `shadow`) is documented as a top-level key:
    that holds only while the loader accepts it there."""
    assert extra_sections(), "no top-level section beside TOP_LEVEL: drop this test"
    for key in extra_sections():
        try:
            parse_config(EXAMPLE_BASE + f"{key}: {{}}\n")
        except ConfigError as exc:
            assert not any(p.path == key and "unknown key" in p.message for p in exc.problems), exc


def test_long_descriptions_stay_out_of_the_cells() -> None:
    for page in (docs.CONFIGURATION, docs.COLLECTORS):
        for line in (ROOT / page).read_text().splitlines():
            if line.startswith("| `") and line.count(" | ") >= 3:
                description = line.rstrip(" |").rsplit(" | ", 1)[1]
                assert len(description) <= 250, f"{page}: {line[:80]}..."


@pytest.mark.parametrize(
    ("doc", "cell"),
    [
        ("Short.", "Short."),
        ("Cap on each list in a report. Ports and connections over it keep a deterministic subset and `total` "
         "stays the true count; a custom list over it is left out whole (logged).",
         "Cap on each list in a report. Ports and connections over it keep a deterministic subset and `total` "
         "stays the true count …"),
        ("`flat`: plain values under cloud metric names, for IoT rules (SINKS.md); `report`: the exact Device "
         "Defender report document.",
         "`flat`: plain values under cloud metric names, for IoT rules (SINKS.md) …"),
    ],
)
def test_short_doc_cuts_at_a_clause(doc: str, cell: str) -> None:
    assert short_doc(doc)[0] == cell


def test_the_notes_sit_beside_their_generators() -> None:
    from benchmarks import report

    assert report.BENCH_NOTES == ROOT / "benchmarks" / "BENCHMARKS.notes.md" and report.BENCH_NOTES.exists()
    assert report.RELIABILITY_NOTES == ROOT / "benchmarks" / "faults" / "RELIABILITY.notes.md"
    assert report.RELIABILITY_NOTES.exists()
    assert not list((ROOT / "docs").glob("*.notes.md"))
