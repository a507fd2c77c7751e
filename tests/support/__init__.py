"""Test support: the Kubernetes API emulator and helpers to run an operator against it."""
