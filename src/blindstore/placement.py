"""The running gateway's placement policy: loaded from a file, swapped whole on reload.

``PolicyHolder.place`` reads the current policy once per call, and the gateway calls it once
per write request: a request keeps the policy it started with even if a reload lands meanwhile.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

import structlog

from blindstore.backends.base import Backend
from blindstore.backends.registry import build_backend
from blindstore.errors import ConfigError, PolicyError
from blindstore.policy import Backend as DeclaredBackend
from blindstore.policy import ObjectFacts, Placement, Policy, decide, load_file

log = structlog.get_logger("blindstore.placement")


def backend_settings(declared: DeclaredBackend) -> dict[str, object]:
    """The constructor settings of a declared backend (``local`` takes its ``path`` only)."""
    if declared.kind == "local":
        return {"path": declared.settings.get("path")}
    return dict(declared.settings)


def build_declared(policy: Policy) -> dict[str, Backend]:
    """Every backend the policy declares, built from its kind and settings."""
    return {
        name: build_backend(name, declared.kind, backend_settings(declared))
        for name, declared in policy.backends.items()
    }


class PolicyHolder:
    """The current policy of ``path``; ``backends`` is the gateway's live backend map."""

    def __init__(self, path: Path, policy: Policy, backends: MutableMapping[str, Backend]) -> None:
        self.path = path
        self._policy = policy
        self._backends = backends

    @property
    def policy(self) -> Policy:
        return self._policy

    def place(self, facts: ObjectFacts) -> Placement:
        """Where ``facts``' object goes under the policy current at this call."""
        return decide(self._policy, facts)

    def reload(self) -> bool:
        """Load the file again; keep the old policy (and log every problem) if it is invalid.

        Backends the new policy declares that are not running yet are built; a running
        backend whose settings changed keeps its old settings until a restart (logged).
        """
        try:
            policy = load_file(self.path)
            added = {
                name: build_backend(name, declared.kind, backend_settings(declared))
                for name, declared in policy.backends.items()
                if name not in self._backends
            }
        except PolicyError as exc:
            for line, reason in exc.problems:
                log.error("policy_reload_refused", source=exc.source, line=line, reason=reason)
            return False
        except ConfigError as exc:
            log.error("policy_reload_refused", source=str(self.path), reason=str(exc))
            return False
        old = self._policy.backends
        for name, declared in policy.backends.items():
            before = old.get(name)
            if before is not None and (
                before.kind != declared.kind or before.settings != declared.settings
            ):
                log.warning("policy_backend_settings_changed_restart_needed", backend=name)
        self._backends.update(added)
        self._policy = policy
        log.info(
            "policy_reloaded", source=str(self.path), rules=len(policy.rules), new=sorted(added)
        )
        return True
