"""``python -m benchmarks.faults``: the fault campaign's command line (benchmarks/faults/cli.py)."""

import sys

from benchmarks.faults.cli import main

sys.exit(main())
