"""Worktrees domain: pure decide/evolve functions (arrive with the worktrees issue). No I/O here."""
