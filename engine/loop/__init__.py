"""The evolution loop: the engine's scheduling (workers, steps, pause and stop), one
candidate's pipeline, steering by commands, the ledger of finished nodes and the heartbeat.
"""
