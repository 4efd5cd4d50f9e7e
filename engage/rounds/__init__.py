"""Priority-setting rounds: a community Top 10 of research questions, the James Lind Alliance
way (shortlist with evidence checks, ranked ballots, equal-weight group tally, final workshop)."""
