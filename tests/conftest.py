"""Session-wide fixtures: one real OpenBao dev server for the whole run."""

from __future__ import annotations

import stamina

from tests.openbao_fixture import disposable_openbao, openbao, transit_key_name

# stamina in testing mode: one attempt, no backoff, so a failure surfaces at once (modules that
# need retries against a flaky stand-in raise the attempt count themselves).
stamina.set_testing(True)

__all__ = ["disposable_openbao", "openbao", "transit_key_name"]
