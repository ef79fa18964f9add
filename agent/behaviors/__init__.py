"""Security-profile behaviors evaluated on the gateway, the way Device Defender Detect evaluates them.

- :mod:`agent.behaviors.model`: the typed behavior (``Behavior``, ``Criteria``, ``Operator``) and the per-metric
  rules (which operators, which ``value`` member, which ``durationSeconds``); a lower layer, next to the config model.
- :mod:`agent.behaviors.check`: the load-time checks (``check_behaviors``), the same rules as
  ``(path, message)`` pairs for the emulator (``validation_errors``) and ``device_support``.
- :mod:`agent.behaviors.evaluate`: ``violates``, a pure function of a behavior and its datapoints.
- :mod:`agent.behaviors.tracker`: ``step``, the alarm state machine (consecutive datapoints, invalidation).
- :mod:`agent.behaviors.event`: ``violation_event``, a transition as a ListViolationEvents ``ViolationEvent``.
- :mod:`agent.behaviors.coverage`: ``unjudgeable_behaviors``, the behaviors whose metric no collector emits.

This package file imports nothing, so that importing the model does not pull in the layers above it.
"""
