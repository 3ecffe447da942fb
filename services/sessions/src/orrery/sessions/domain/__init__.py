"""Sessions domain: pure decide/evolve functions (arrive with the sessions issue). No I/O here."""
