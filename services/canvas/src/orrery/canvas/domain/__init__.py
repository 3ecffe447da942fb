"""Canvas domain: pure decide/evolve functions, no I/O."""
