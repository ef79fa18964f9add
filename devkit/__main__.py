"""`python -m devkit COMMAND` from a checkout."""

from devkit.cli import main

main()
