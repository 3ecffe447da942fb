"""Adapters of the worktrees service: its I/O edges (git, processes, files) behind typed APIs."""
