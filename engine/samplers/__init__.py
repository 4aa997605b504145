"""ASI-Evolve."""
