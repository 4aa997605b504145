"""The LLM agents: the OpenAI-compatible client and its settings, the researcher,
analyzer, judge and static-check agent, and their prompt templates.
"""
