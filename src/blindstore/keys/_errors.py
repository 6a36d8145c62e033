"""Errors handed to several waiters (pool refills, shared unwraps) are re-raised as copies."""

from __future__ import annotations

from blindstore.errors import BlindstoreError, KeyServiceError


def copy_error(error: BaseException) -> BlindstoreError:
    """A fresh exception equal to ``error``, for one waiter to raise ``from`` the original.

    Raising one stored exception object in many tasks would splice all their tracebacks onto it.
    Anything that is not ours (a bug) becomes an opaque ``KeyServiceError``.
    """
    if isinstance(error, BlindstoreError):
        return type(error)(error.message, **error.fields)
    return KeyServiceError("key service call failed")
