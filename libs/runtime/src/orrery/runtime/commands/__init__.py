"""The command handling loop every service shares: load, decide, append; errors by table."""
