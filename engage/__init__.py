"""Engage: the participation platform of an MS research network."""
