"""The terminal UI (Textual), which meets the engine only through the run database."""
