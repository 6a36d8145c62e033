"""The admin API against its own OpenAPI schema (schemathesis): no 5xx, every answer documented.

Schemathesis reads ``/-/openapi.json`` from a running gateway and, for each operation, sends
requests that Hypothesis generates from the schema, with the admin token; every response must
have a documented status, content type and body shape, and none may be a server error. The
number of examples is bounded so that the whole run stays within seconds.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.openapi import from_url
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import negative_data_rejection

from blindstore.devtools.openbao import OpenBaoServer
from tests.gwserver import RunningGateway, start_admin_gateway

TOKEN = "admin-token-" + secrets.token_hex(8)

POLICY = """\
version: 1
backends:
  disk:
    kind: local
    provider: Hôpital Nord
    jurisdiction: EEA
    settings: {{path: "{root}/disk"}}
rules:
  - name: everything
    targets: [disk]
"""


@pytest.fixture(scope="module")
def schema_gw(
    openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    root: Path = tmp_path_factory.mktemp("admin-schema")
    running = start_admin_gateway(
        root,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        admin_token=TOKEN,
        policy=POLICY.format(root=root),
    )
    yield running
    running.stop()


#: Examples per operation and generation mode: enough to hit each documented failure, bounded so
#: that the whole run takes seconds.
MAX_EXAMPLES = int(os.environ.get("BLINDSTORE_SCHEMA_EXAMPLES", "20"))


def conformance_test(operation: APIOperation, mode: GenerationMode) -> Callable[[], None]:
    """The Hypothesis test of one operation: every generated request, sent with the admin token,
    gets an answer its schema documents, and never a 5xx."""
    options: dict[str, Any] = {}
    if operation.label == "POST /-/policy/validate":
        # Any text is a policy document to check (the answer lists its problems): no YAML value
        # is "invalid data" for this operation.
        options["excluded_checks"] = [negative_data_rejection]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, **options)

    return conforms


def test_the_admin_api_answers_as_its_schema_says(
    schema_gw: RunningGateway, subtests: pytest.Subtests
) -> None:
    # schemathesis' lazy pytest integration (``from_fixture``) does not run under pytest 9, so
    # the Hypothesis test of each operation is built here, one subtest per operation and mode.
    schema = from_url(f"{schema_gw.endpoint}/-/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    for operation in operations:
        # Negative cases (schema-violating inputs) exist only where the operation takes some.
        modes = [GenerationMode.POSITIVE]
        if any(len(part) for part in (operation.path_parameters, operation.query, operation.body)):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            with subtests.test(msg=f"{operation.label} ({mode.value})"):
                conformance_test(operation, mode)()
