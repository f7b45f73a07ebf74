"""Exceptions shared by launchers, the download cache and the stack.

Kept in a module of their own, free of imports, so low-level modules (the
download cache) can raise them without importing the launcher package.
"""

from __future__ import annotations


class NotReady(Exception):
    """A health check failed; the message says why (shown on timeout)."""


class ComponentUnavailable(Exception):
    """A component cannot run here (binary missing...); message says how to fix it."""


class StackError(Exception):
    """A component failed to start or the stack is misconfigured; message is for users."""
