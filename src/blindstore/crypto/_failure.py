"""The one way this package reports a failed verification."""

from __future__ import annotations

from blindstore.errors import IntegrityError


class IntegrityFailure(IntegrityError):
    """An ``IntegrityError`` whose cause is kept for server logs only.

    The message is the generic default of ``IntegrityError`` whatever the cause, so nothing a
    client sees distinguishes a bad tag from a bad header or a wrong length (no oracle).
    """

    def __init__(self, reason: str) -> None:
        super().__init__()
        #: Why verification failed, for the audit log; never rendered to a client.
        self.reason = reason


def integrity_failure(reason: str) -> IntegrityError:
    """Build the opaque error for a verification failure with a private ``reason``."""
    return IntegrityFailure(reason)
