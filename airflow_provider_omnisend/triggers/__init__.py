"""Async triggers for deferrable sensors."""
