"""How a candidate's experiment runs: the Engineer, one command under limits, the
sandbox and its supervisor, the reaper, slots, work dirs and the Ray backend.
"""
