"""Researcher, Analyzer and friends: offline and LLM-backed."""
