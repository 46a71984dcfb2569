"""GET /api/v1/analytics/usage and /retention on both databases, and their refusals."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from leafwatch.api.usage import retention_out, usage_out
from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.storage import db, usage
from leafwatch.storage.tables import JobRun, RollupDay
from tests.api.test_metrics import judge, predict
from tests.conftest import image_bytes
from tests.servers import eventually
from tests.storage.test_usage import PERIOD, seed_usage

MARCH = {"from": "2026-03-01", "to": "2026-03-10"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A started app."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def seeded(client: TestClient, settings: Settings) -> TestClient:
    engine = db.make_engine(settings.resolved_database_url())
    with db.make_sessionmaker(engine)() as session:
        seed_usage(session)
    engine.dispose()
    return client


def test_usage_of_a_period(seeded: TestClient) -> None:
    answer = seeded.get("/api/v1/analytics/usage", params=MARCH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["start"].startswith("2026-03-01T00:00:00")
    assert body["end"].startswith("2026-03-11T00:00:00")
    assert body["total_predictions"] == 10
    assert body["users"] == 5
    assert body["active_users"] == {"daily": 1, "weekly": 3, "monthly": 5}
    assert body["judged_predictions"] == 2
    assert body["feedback_rate"] == pytest.approx(0.2)
    assert body["located_predictions"] == 5
    assert [entry["hour"] for entry in body["peak_hours"]] == list(range(24))
    assert body["peak_hours"][8]["predictions"] == 3
    assert sum(entry["predictions"] for entry in body["peak_hours"]) == 10
    assert body["locations"][0] == {"location": "Kisumu", "predictions": 3, "users": 3}
    assert len(body["daily"]) == 10
    second = body["daily"][1]
    assert second["day"] == "2026-03-02"
    assert (second["active_users"], second["new_users"], second["returning_users"]) == (3, 1, 2)
    assert second["classes"] == dict.fromkeys(CLASS_NAMES, 0) | {"Healthy": 1, "Stage1": 2}


def test_retention_of_a_period(seeded: TestClient) -> None:
    answer = seeded.get("/api/v1/analytics/retention", params=MARCH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["d1"] == {"retained": 2, "users": 3, "rate": pytest.approx(2 / 3)}
    assert body["d7"] == {"retained": 2, "users": 3, "rate": pytest.approx(2 / 3)}
    first, last = body["cohorts"][0], body["cohorts"][-1]
    assert first == {
        "day": "2026-03-01",
        "size": 2,
        "d1_retained": 1,
        "d1_rate": 0.5,
        "d7_retained": 1,
        "d7_rate": 0.5,
    }
    assert last["day"] == "2026-03-10"
    assert (last["size"], last["d1_retained"], last["d7_rate"]) == (1, None, None)


def test_the_scheduled_rollup_answers_as_the_rows_do(settings: Settings) -> None:
    engine = db.make_engine(settings.resolved_database_url())
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    with sessions() as session:
        seed_usage(session)
    rolling = Settings(**(settings.model_dump() | {"rollup_interval_seconds": 3600}))

    def rolled() -> bool:
        with sessions() as session:
            done = select(JobRun.status).where(JobRun.job == "rollups")
            return session.scalar(done) == "done"

    with TestClient(create_app(rolling)) as client:
        assert eventually(rolled)  # the job runs once at start, then every hour
        answers = [client.get(f"/api/v1/analytics/{path}", params=MARCH) for path in PATHS]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RollupDay)) > 200  # 20 Feb on
        live = [
            usage_out(usage.usage_report(session, period=PERIOD, live=True)),
            retention_out(usage.retention(session, period=PERIOD, live=True)),
        ]
    engine.dispose()
    assert [answer.json() for answer in answers] == [
        figures.model_dump(mode="json") for figures in live
    ]


PATHS = ("usage", "retention")


def test_the_default_period_is_the_last_30_days(client: TestClient) -> None:
    first = predict(client, image_bytes())
    predict(client, image_bytes())
    judge(client, first, True, "web")
    body = client.get("/api/v1/analytics/usage").json()
    assert body["total_predictions"] == 2
    assert body["feedback_rate"] == 0.5
    assert body["active_users"] == {"daily": 1, "weekly": 1, "monthly": 1}
    assert len(body["daily"]) == 31  # today and the 30 days before it, each touched
    assert body["daily"][-1]["new_users"] == 1
    retention = client.get("/api/v1/analytics/retention").json()
    assert retention["cohorts"][-1]["size"] == 1
    assert retention["d1"]["users"] == 0  # today's cohort cannot show D1 yet


@pytest.mark.parametrize("path", ["/api/v1/analytics/usage", "/api/v1/analytics/retention"])
@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"from": "2026-03-10", "to": "2026-03-01"}, "must be before"),
        ({"from": "last tuesday"}, "from='last tuesday' is not an ISO 8601"),
        ({"to": "2026-02-30"}, "to='2026-02-30' is not an ISO 8601"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "at most 366 days"),
        ({"from": "2999-01-01"}, "must be before"),
    ],
)
def test_bad_periods_are_refused_with_422(
    client: TestClient, path: str, params: dict[str, str], detail: str
) -> None:
    answer = client.get(path, params=params)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid_period"
    assert detail in body["detail"]


def test_every_field_is_described_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/api/v1/analytics/usage", "/api/v1/analytics/retention"):
        operation = schema["paths"][path]["get"]
        assert operation["description"]
        names = {parameter["name"]: parameter for parameter in operation["parameters"]}
        assert set(names) == {"from", "to"}
        assert all(parameter["description"] for parameter in names.values())
    components = schema["components"]["schemas"]
    for name in ("UsageOut", "DayUsageOut", "RetentionOut", "CohortOut", "HourOut"):
        for field, spec in components[name]["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"
