"""Governance: research project proposals decided by independent registries."""
