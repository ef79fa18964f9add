"""What the loop hands the consumers after remote config is resolved (the shadow echoes it in ``reported``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class Outcome:
    version: Optional[int] = None  # the shadow version whose desired state is now applied (None: none ever)
    applied: Mapping[str, Any] = field(default_factory=dict)  # the remote keys in effect, nested as agent.yaml
    # nests them (what `reported` echoes so the shadow shows no delta for them)
    refused: Mapping[str, str] = field(default_factory=dict)  # dotted key ("mqtt.endpoint") -> reason
