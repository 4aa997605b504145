"""The agents of the loop: Researcher, Analyzer, Judge, debug and static-check agents.

``base`` holds what they share (records, protocols), ``setup`` builds a run's set,
``offline/`` the built-in agents, ``llm/`` the LLM ones.
"""
