"""Tests of engage/consent."""
