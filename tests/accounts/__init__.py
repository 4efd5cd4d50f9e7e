"""Tests of engage/accounts."""
