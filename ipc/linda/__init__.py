"""Lindas (placeholder; the linda module is written elsewhere)."""
