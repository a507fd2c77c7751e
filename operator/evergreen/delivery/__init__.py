"""Progressive delivery: the canary state machine and version holds (pure)."""
