"""Newsletters: mailing lists, campaigns and scheduled delivery of progress updates."""
