"""The one error the core raises: input that does not decode."""

from __future__ import annotations


class DecodeError(ValueError):
    """A frame, message or transaction that does not have the expected shape."""
