"""Bad input of a command: the one exception every command raises for it.

Apart from the commands themselves so that the parser and the light readers (``status``,
``best``, ``stop``) can raise it without importing what a run needs.
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad input: reported as one line with exit code 2."""
