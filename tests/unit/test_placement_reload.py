"""Reloading the placement policy (what SIGHUP does in `blindstore serve`)."""

from __future__ import annotations

from pathlib import Path

from blindstore.backends.base import Backend
from blindstore.placement import PolicyHolder, build_declared
from blindstore.policy import ObjectFacts, load_file


def _policy(tmp_path: Path, targets: str, extra_backend: str = "") -> str:
    return f"""\
version: 1
backends:
  disk-a:
    kind: local
    provider: Us
    jurisdiction: EEA
    settings: {{path: {tmp_path / "a"}}}
{extra_backend}
rules:
  - name: all
    targets: [{targets}]
"""


def test_a_valid_policy_replaces_the_old_one_and_its_new_backends_are_built(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(_policy(tmp_path, "disk-a"))
    policy = load_file(path)
    backends: dict[str, Backend] = build_declared(policy)
    holder = PolicyHolder(path, policy, backends)
    facts = ObjectFacts(tenant="t", bucket="b", key="k")
    extra = f"""\
  disk-b:
    kind: local
    provider: Us
    jurisdiction: EEA
    settings: {{path: {tmp_path / "b"}}}"""
    path.write_text(_policy(tmp_path, "disk-a, disk-b", extra))

    assert holder.place(facts).targets == ("disk-a",)
    assert holder.reload()
    assert holder.place(facts).targets == ("disk-a", "disk-b")
    assert sorted(backends) == ["disk-a", "disk-b"]


def test_an_invalid_policy_is_refused_and_the_old_one_kept(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(_policy(tmp_path, "disk-a"))
    policy = load_file(path)
    holder = PolicyHolder(path, policy, build_declared(policy))
    path.write_text(_policy(tmp_path, "nowhere"))

    assert not holder.reload()
    assert holder.policy is policy
    assert holder.place(ObjectFacts(tenant="t", bucket="b", key="k")).targets == ("disk-a",)
