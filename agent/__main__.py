"""``python -m agent`` runs the command line (same as the ``defender-agent`` script)."""

from agent.cli import main

if __name__ == "__main__":
    main()
