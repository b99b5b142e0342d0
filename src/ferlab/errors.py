"""One exception type for problems the user can fix (bad path, corrupt file, no camera).

The CLI prints these as a single line and exits non-zero instead of showing a traceback;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class FerlabError(Exception):
    """A user-facing error: the message names the thing that is wrong and what to do."""

    exit_code = 2
