"""The cognition base: knowledge items, embeddings and retrieval."""
