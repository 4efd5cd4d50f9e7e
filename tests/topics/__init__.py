"""Tests of engage/topics."""
