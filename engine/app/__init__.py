"""The application: the ``run`` command and the composition root that wires the engine,
the cognition base and the TUI together (nothing else in ``engine/`` imports them).
"""
