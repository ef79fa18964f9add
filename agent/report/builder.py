"""Samples in, checked report bytes out: the step between the collectors and the outbox."""

from __future__ import annotations

import logging
from typing import Dict, Sequence, Set

from agent.catalog import STANDARD_METRICS
from agent.config.model import Config
from agent.report.encode import EncodedReport, Encoder
from agent.report.model import CustomValue, Report, Sample, SampleKind, StandardValue


class ReportBuilder:
    """Builds one report per call; logs each dropped metric once per streak of failures."""

    def __init__(self, config: Config, logger: logging.Logger) -> None:
        self.encoder = Encoder(
            config.custom_metrics,
            fmt=config.report.format,
            key_names=config.report.key_names,
            max_list_items=config.report.max_list_items,
        )
        self.log = logger
        self._failing: Set[str] = set()
        self._warned_unusual: Set[str] = set()
        self._warned_capped: Set[str] = set()

    def build(self, report_id: int, samples: Sequence[Sample]) -> EncodedReport:
        standard: Dict[str, StandardValue] = {}
        custom: Dict[str, CustomValue] = {}
        for sample in samples:
            if sample.kind is SampleKind.STANDARD and sample.name in STANDARD_METRICS:
                standard[sample.name] = sample.value  # type: ignore[assignment]
            else:
                custom[sample.name] = sample.value  # type: ignore[assignment]
        encoded = self.encoder.encode(Report(report_id, standard, custom))
        self._log_outcome(encoded, set(custom))
        return encoded

    def _log_outcome(self, encoded: EncodedReport, sent_custom: Set[str]) -> None:
        now_failing = {v.metric or v.path for v in encoded.dropped}
        for violation in encoded.dropped:
            key = violation.metric or violation.path
            if key not in self._failing:
                self.log.warning(
                    "Dropped custom metric %r from report %d: %s (logged once until it recovers)",
                    key, encoded.report_id, violation,
                )
        for key in sorted(self._failing - now_failing):
            if key in sent_custom:
                self.log.info("Custom metric %r is valid again (report %d)", key, encoded.report_id)
        self._failing = now_failing
        for name in encoded.unusual_strings:
            if name not in self._warned_unusual:
                self._warned_unusual.add(name)
                self.log.warning(
                    "Custom metric %r sends strings outside the service's documented character set "
                    "(allow_any_characters is set); the service may not store them",
                    name,
                )
        for path in encoded.capped:
            if path not in self._warned_capped:
                self._warned_capped.add(path)
                self.log.warning(
                    "List %s is longer than report.max_list_items or the 128 KiB payload limit; "
                    "sending a deterministic subset with the true total (logged once)",
                    path,
                )
