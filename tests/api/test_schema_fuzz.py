"""Schemathesis against the OpenAPI schema of a real server: no 5xx, every answer as documented.

Each operation gets a bounded number of generated requests, valid and invalid ones. (Schemathesis'
own pytest plugin cannot load a schema from a fixture under pytest 9, so its strategies are driven
with Hypothesis here, one subtest per operation and mode.)
"""

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.schemas import APIOperation, BaseSchema

from tests.servers import leafwatch_serve

ADMIN_TOKEN = "fuzz-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FAULTS = "/api/v1/admin/faults"
EXAMPLES = 25
# What the schema promises about answers. Left out: whether valid input is accepted and invalid
# input refused, which rules beyond the schema decide (an empty file, a verdict without a class).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real server on SQLite, with the admin endpoints and the fault switch on."""
    workdir = tmp_path_factory.mktemp("fuzz")
    environment = {
        "LEAFWATCH_LOG_FILE": "",
        "LEAFWATCH_ACCESS_LOG": "false",
        "LEAFWATCH_ADMIN_TOKEN": ADMIN_TOKEN,
        "LEAFWATCH_FAULTS_ENABLED": "true",
        "LEAFWATCH_DRIFT_INTERVAL_SECONDS": "0",
        "LEAFWATCH_PERFORMANCE_INTERVAL_SECONDS": "0",
        "LEAFWATCH_MODEL_POLL_SECONDS": "0",
    }
    with leafwatch_serve(workdir, env=environment) as (url, _process):
        yield url


@pytest.fixture(scope="module")
def api_schema(server: str) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{server}/openapi.json")


def fuzz(operation: APIOperation, mode: GenerationMode, server: str) -> None:
    """Send EXAMPLES generated requests to one operation and check every answer."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def examples(case: Case) -> None:
        case.call_and_validate(base_url=server, headers=ADMIN, checks=CHECKS)
        if case.path == FAULTS and case.method.upper() == "POST":
            # An injected fault turns later answers into 5xx on purpose: switch it off at once.
            httpx.delete(f"{server}{FAULTS}", headers=ADMIN).raise_for_status()

    try:
        examples()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # No parameter or body to get wrong: there is no invalid request to send.


def test_every_operation_answers_as_documented(
    api_schema: BaseSchema, server: str, subtests: pytest.Subtests
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15  # the schema was read whole
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            with subtests.test(operation=operation.label, mode=mode.value):
                fuzz(operation, mode, server)
    assert httpx.get(f"{server}/ready").status_code == 200
