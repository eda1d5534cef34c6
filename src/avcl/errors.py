"""Errors that are the user's to fix: the command line prints them as one line, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, a missing file, an inconsistent option: something the user can fix."""
