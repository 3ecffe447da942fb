"""Canvas read models in the ``canvas`` schema."""
