"""The verbs: one module per `grader` command (see grader/cli.py)."""
