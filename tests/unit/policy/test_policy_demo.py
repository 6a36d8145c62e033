"""The shipped policies: the demo of deploy/ places the three classifications as issue 3 asks,
and the complete example of docs/policy.md is a valid policy."""

from __future__ import annotations

import pytest

from blindstore.policy import HDS, HdsActivity, ObjectFacts, decide, explain, load_file, parse
from tests.unit.policy.texts import DEMO, docs_example

POLICY = load_file(DEMO)
SOVEREIGN = {"sovereign-disk", "onprem-s3"}
PUBLIC = {"aws", "azure", "gcs"}


def place(classification: str | None, bucket: str = "any-bucket") -> tuple[str, ...]:
    facts = ObjectFacts("Hôpital Nord", bucket, "scans/0001.dcm", classification=classification)
    return decide(POLICY, facts).targets


def test_the_demo_declares_the_backends_of_the_issue() -> None:
    backends = POLICY.backends
    assert {name: b.kind for name, b in backends.items()} == {
        "sovereign-disk": "local",
        "onprem-s3": "s3",
        "aws": "s3",
        "azure": "azure",
        "gcs": "gcs",
    }
    assert backends["aws"].region == "eu-west-3"
    assert backends["azure"].region == "francecentral"
    assert backends["gcs"].region == "europe-west9"
    assert set(backends["sovereign-disk"].hds_activities.values()) == {"Hôpital Nord"}
    aws = backends["aws"].hds_activities
    assert {aws[a] for a in (HdsActivity.PHYSICAL_SITES, HdsActivity.HARDWARE)} == {
        "Amazon Web Services"
    }
    assert aws[HdsActivity.BACKUP] == "Hôpital Nord"


def test_identifying_data_stays_on_sovereign_storage() -> None:
    targets = place("identifying")
    assert set(targets) <= SOVEREIGN
    for name in targets:
        backend = POLICY.backends[name]
        assert HDS in backend.certifications
        assert backend.jurisdiction == "EEA"


def test_pseudonymized_data_goes_to_sovereign_storage_plus_one_public_cloud() -> None:
    targets = set(place("pseudonymized"))
    assert targets & SOVEREIGN
    assert len(targets & PUBLIC) == 1


@pytest.mark.parametrize("classification", ["anonymous", "unclassified", None])
def test_everything_else_goes_to_public_clouds(classification: str | None) -> None:
    assert set(place(classification)) <= PUBLIC


def test_bucket_defaults_classify_objects_that_say_nothing() -> None:
    assert set(place(None, bucket="patient-records")) <= SOVEREIGN
    assert set(place(None, bucket="research-exports")) & PUBLIC


def test_explain_shows_the_facts_of_each_target_but_never_their_settings() -> None:
    facts = ObjectFacts("Hôpital Nord", "b", "k", classification="pseudonymized")
    document = explain(POLICY, facts).as_dict()
    assert document["rule"]["name"] == "pseudonymized-sovereign-and-aws"
    assert [t["name"] for t in document["targets"]] == ["sovereign-disk", "aws"]
    assert document["targets"][1]["hds_activities"]["physical_sites"] == "Amazon Web Services"
    assert "settings" not in str(document)
    assert "eu-west-3" in str(document)


def test_the_complete_example_of_the_docs_is_valid() -> None:
    policy = parse(docs_example(), "docs/policy.md")
    research = next(r for r in policy.rules if r.name == "research-imaging")
    facts = ObjectFacts(
        "CHU Recherche",
        "cohort-imaging",
        "series/1/img.dcm",
        tags={"project": "oncology-2025"},
        classification="pseudonymized",
        size=100 * 1024 * 1024,
        content_type="application/dicom",
    )
    assert decide(policy, facts).rule == research.name
