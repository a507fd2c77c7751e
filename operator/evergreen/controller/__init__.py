"""The operator: kopf wiring around one reconcile step per ModelMonitor."""
