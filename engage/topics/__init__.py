"""Research topics: proposed by participants, clinicians and MS organisations, moderated by
staff, discussed, and supported (voted on) with tallies by role."""
