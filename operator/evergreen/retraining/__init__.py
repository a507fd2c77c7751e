"""Retraining: guardrails, the validation gate and the life of a run (pure)."""
