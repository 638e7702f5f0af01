"""The command line: the only layer that prints results or decides exit codes."""
