"""ASI-Evolve engine: run store, samplers, agents, executor, asyncio loop and CLI."""
