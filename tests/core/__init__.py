"""Tests of the core (engage/*.py)."""
