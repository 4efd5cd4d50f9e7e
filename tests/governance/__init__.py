"""Tests of the governance package: proposals, registry decisions, cohorts and deadlines."""
