"""Evergreen: keeps production ML models healthy."""

__version__ = "0.1.0"
