"""Build a backend from its kind and settings: the one place that maps kinds to classes.

Cloud SDKs are imported only for the kinds in use, so a local-only gateway never loads them.
Settings are validated by each backend's own settings model (``extra="forbid"``): a misspelt
field is a startup error, not a silently ignored option.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from blindstore.backends.base import Backend
from blindstore.errors import ConfigError

KINDS = ("local", "memory", "s3", "azure", "gcs")


def build_backend(name: str, kind: str, settings: Mapping[str, Any]) -> Backend:
    """A backend named ``name`` of ``kind`` configured by ``settings``; ConfigError if wrong."""
    try:
        return _build(name, kind, dict(settings))
    except ValidationError as exc:
        raise ConfigError(f"backend {name!r} ({kind}): invalid settings:\n{exc}") from exc


def _build(name: str, kind: str, settings: dict[str, Any]) -> Backend:
    if kind == "local":
        from blindstore.backends.local import LocalBackend

        unknown = set(settings) - {"path"}
        if unknown or "path" not in settings:
            raise ConfigError(f"backend {name!r} (local) takes exactly one setting: path")
        return LocalBackend(Path(settings["path"]), name=name)
    if kind == "memory":
        from blindstore.backends.memory import MemoryBackend

        return MemoryBackend(name)
    if kind == "s3":
        from blindstore.backends.s3 import S3Backend, S3BackendSettings

        return S3Backend(S3BackendSettings.model_validate(settings), name=name)
    if kind == "azure":
        from blindstore.backends.azure import AzureBackend, AzureBackendSettings

        return AzureBackend(AzureBackendSettings.model_validate(settings), name=name)
    if kind == "gcs":
        from blindstore.backends.gcs import GcsBackend, GcsBackendSettings

        return GcsBackend(GcsBackendSettings.model_validate(settings), name=name)
    raise ConfigError(f"backend {name!r}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
