"""The `lacme-watch` command line: grammar, commands, and what they print."""
