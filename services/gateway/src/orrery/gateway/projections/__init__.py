"""The gateway's read models, projected from its own log."""
