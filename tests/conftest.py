"""Session-wide fixtures: one real OpenBao dev server for the whole run."""

from __future__ import annotations

import stamina

from tests.openbao_fixture import disposable_openbao, openbao, transit_key_name

# Retries keep their attempt counts in tests but do not sleep between attempts.
stamina.set_testing(True)

__all__ = ["disposable_openbao", "openbao", "transit_key_name"]
