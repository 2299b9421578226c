"""Sinks: Delta tables and Personalize batch JSON lines."""
