"""One module per subcommand; see agent.cli."""
