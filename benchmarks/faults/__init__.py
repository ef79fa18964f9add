"""The fault campaign (docs/RELIABILITY.md): ``python -m benchmarks.faults [--short] [--only NAME ...]``.

One module per scenario, each with ``run(short) -> Scenario``:

- configs, replies: generated inputs against the config loader and the reply parser
- exec_timeouts, exec_flood: exec collectors that hang or print 1 GiB (shared: exec_sampler)
- kills, broker_restarts, cuts, disk_full, corrupt: `defender-agent run` on the loopback rig under
  SIGKILLs, broker restarts, connection faults, a full disk, damaged state files (shared: live_agent)

harness: the record (Scenario), the seed and the hang guard; cli: the order, ``run_campaign`` and
the command line (``__main__``). Each scenario's docstring names the tests it overlaps.
"""
