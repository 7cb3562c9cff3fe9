"""Errors a user can cause and fix: reported in one line at the CLI edge, no traceback."""

from __future__ import annotations


class GansegError(Exception):
    """A problem with the user's input, params or files.

    The message is one line that names the offending file or key and, where it helps,
    says how to fix it. The stage layer prints it and exits non-zero.
    """


class ConfigError(GansegError):
    """A wrong, missing, mistyped or out-of-range key in a params file."""


class DataError(GansegError):
    """An unreadable, missing or inconsistent image or mask file."""
