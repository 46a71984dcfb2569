"""Who gets in: API keys on predict and feedback, the rate limit, the admin token; no leaks."""

import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import SecretStr
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from leafwatch.api.security import MISS_RELOAD_S, KeyRing, RateLimiter
from leafwatch.app import create_app
from leafwatch.config import PRODUCTION_RATE_LIMIT_PER_MINUTE, Settings
from leafwatch.storage import db, keys
from tests.conftest import image_bytes
from tests.scrape import total


class FakeClock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_key(settings: Settings, name: str) -> keys.NewKey:
    """Create a key in the settings' database (migrated first), as `leafwatch keys create` does."""
    engine = db.make_engine(settings.resolved_database_url())
    db.upgrade(engine)
    with Session(engine) as session:
        new = keys.create_key(session, name=name)
    engine.dispose()
    return new


def revoke(settings: Settings, key: keys.NewKey) -> None:
    engine = create_engine(settings.resolved_database_url())
    with Session(engine) as session:
        keys.revoke_key(session, key_id=key.id)
    engine.dispose()


def predict(client: TestClient, headers: dict[str, str] | None = None) -> Response:
    return client.post(
        "/api/v1/predict",
        files={"file": ("leaf.jpg", image_bytes(), "image/jpeg")},
        data={"user_id": "farmer-1"},
        headers=headers,
    )


def stats(client: TestClient, key: str | None = None) -> Response:
    return client.get("/api/v1/feedback/stats", headers={"X-API-Key": key} if key else None)


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    """Keys required, revocations seen at once."""
    return settings.model_copy(update={"require_api_key": True, "api_key_cache_seconds": 0})


@pytest.fixture
def keyed_client(keyed: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(keyed)) as client:
        yield client


# Keys


def test_the_production_profile_requires_keys_and_limits_the_rate(tmp_path: Path) -> None:
    embedded = Settings(var_dir=tmp_path)
    assert not embedded.requires_api_key()
    assert embedded.resolved_rate_limit_per_minute() == 0
    production = Settings(var_dir=tmp_path, profile="production")
    assert production.requires_api_key()
    assert production.resolved_rate_limit_per_minute() == PRODUCTION_RATE_LIMIT_PER_MINUTE
    relaxed = Settings(
        var_dir=tmp_path, profile="production", require_api_key=False, rate_limit_per_minute=0
    )
    assert not relaxed.requires_api_key()
    assert relaxed.resolved_rate_limit_per_minute() == 0


def test_with_keys_required_predict_and_feedback_refuse_a_missing_or_wrong_key(
    keyed: Settings, keyed_client: TestClient
) -> None:
    valid = make_key(keyed, "mobile-app")
    wrong = "lw_" + "A" * 43
    for given in (None, wrong, "not even key-shaped"):
        headers = {"X-API-Key": given} if given else None
        answer = predict(keyed_client, headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "unauthorized"
        assert "X-API-Key" in answer.json()["detail"]
        refused = keyed_client.post(
            "/api/v1/feedback/submit",
            json={"prediction_id": "00000000-0000-0000-0000-000000000000", "is_correct": True},
            headers=headers,
        )
        assert refused.status_code == 401
        assert stats(keyed_client, given).status_code == 401
    answer = predict(keyed_client, {"X-API-Key": valid.key})
    assert answer.status_code == 200, answer.text
    verdict = keyed_client.post(
        "/api/v1/feedback/submit",
        json={
            "prediction_id": answer.json()["prediction_id"],
            "is_correct": True,
            "feedback_source": "expert_review",
        },
        headers={"X-API-Key": valid.key},
    )
    assert verdict.status_code == 201, verdict.text
    assert stats(keyed_client, valid.key).json()["total_feedback"] == 1
    # Stored predictions name users and places: reading them takes a key too.
    one = f"/api/v1/predictions/{answer.json()['prediction_id']}"
    for path in ("/api/v1/predictions", one):
        assert keyed_client.get(path).status_code == 401
        assert keyed_client.get(path, headers={"X-API-Key": wrong}).status_code == 401
        assert keyed_client.get(path, headers={"X-API-Key": valid.key}).status_code == 200
    # Routes outside the client API stay as they were.
    assert keyed_client.get("/health").status_code == 200
    assert keyed_client.get("/metrics").status_code == 200


def test_a_revoked_key_is_refused(keyed: Settings, keyed_client: TestClient) -> None:
    key = make_key(keyed, "old-app")
    assert stats(keyed_client, key.key).status_code == 200
    revoke(keyed, key)
    answer = stats(keyed_client, key.key)
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"


def test_without_keys_required_anyone_gets_in_but_a_wrong_key_is_still_refused(
    client: TestClient, settings: Settings
) -> None:
    key = make_key(settings, "web")
    assert predict(client).status_code == 200
    assert stats(client, "lw_made-up").status_code == 401
    assert stats(client, key.key).status_code == 200


def test_the_openapi_schema_documents_the_key_and_the_refusals(keyed_client: TestClient) -> None:
    schema = keyed_client.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["APIKeyHeader"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-API-Key"}
    operation = schema["paths"]["/api/v1/predict"]["post"]
    assert {"401", "429"} <= set(operation["responses"])
    assert "Retry-After" in operation["responses"]["429"]["headers"]


def test_the_key_ring_sees_a_new_key_at_once_and_a_revocation_within_its_ttl(
    settings: Settings,
) -> None:
    key = make_key(settings, "web")
    engine = db.make_engine(settings.resolved_database_url())
    clock = FakeClock()
    ring = KeyRing(db.make_sessionmaker(engine), ttl_s=30, clock=clock)
    try:
        assert ring.find(key.key) == keys.ActiveKey(id=key.id, name="web")
        assert ring.find("lw_unknown") is None
        late = make_key(settings, "late")
        clock.now += MISS_RELOAD_S  # an unknown key reloads, at most once a second
        assert ring.find(late.key) is not None
        revoke(settings, key)
        clock.now += 29
        assert ring.find(key.key) is not None  # the copy is trusted for 30 seconds
        clock.now += 1
        assert ring.find(key.key) is None
    finally:
        engine.dispose()


def test_the_key_ring_keeps_its_copy_while_the_database_is_away(settings: Settings) -> None:
    key = make_key(settings, "web")
    engine = db.make_engine(settings.resolved_database_url())
    clock = FakeClock()
    ring = KeyRing(db.make_sessionmaker(engine), ttl_s=30, clock=clock)
    try:
        assert ring.find(key.key) is not None
        ring.note_use(key.id)
        with engine.begin() as connection:  # the table goes away: every read fails
            connection.exec_driver_sql("ALTER TABLE api_keys RENAME TO api_keys_away")
        clock.now += 60
        assert ring.find(key.key) is not None
        assert ring.find("lw_unknown") is None
    finally:
        engine.dispose()


def test_a_key_use_is_written_as_last_used(keyed: Settings) -> None:
    key = make_key(keyed, "web")
    with TestClient(create_app(keyed)) as client:
        assert stats(client, key.key).status_code == 200
        assert stats(client, key.key).status_code == 200  # the reload writes the first use
    engine = db.make_engine(keyed.resolved_database_url())
    with Session(engine) as session:
        (row,) = keys.list_keys(session)
    engine.dispose()
    assert row.last_used_at is not None


# Rate limit


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0  # every client has its own bucket
    clock.now += 0.5
    assert limiter.take("a") == pytest.approx(0.5)  # a refused request costs nothing
    clock.now += 0.5
    assert limiter.take("a") == 0
    clock.now += 3600
    assert [limiter.take("a") for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


def test_the_bucket_forgets_the_least_recent_clients_beyond_its_bound() -> None:
    limiter = RateLimiter(per_minute=1, burst=1, max_clients=2, clock=FakeClock())
    for client in ("a", "b", "c"):
        assert limiter.take(client) == 0
    assert limiter.take("c") > 0
    assert limiter.take("a") == 0  # forgotten: a fresh bucket


def test_a_client_over_its_rate_gets_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(
        update={"rate_limit_per_minute": 2, "rate_limit_burst": 2, "require_api_key": False}
    )
    first, second = make_key(settings, "first"), make_key(settings, "second")
    with TestClient(create_app(limited)) as client:
        assert [stats(client, first.key).status_code for _ in range(2)] == [200, 200]
        answer = stats(client, first.key)
        assert answer.status_code == 429
        assert answer.json()["error"] == "rate_limited"
        assert answer.json()["detail"]
        assert 1 <= int(answer.headers["Retry-After"]) <= 30
        assert stats(client, second.key).status_code == 200  # another key, another bucket
        # Without a key the caller's address is the client, and it has a bucket of its own.
        assert [stats(client).status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/health").status_code == 200  # probes are never limited
        text = client.get("/metrics").text
    assert total(text, "api_rate_limited_total") == 2
    assert total(text, "api_requests_total", endpoint="/api/v1/feedback/stats", status="429") == 2


# The admin token


# What only an administrator may call: what changes the service, and the alert webhook.
ADMIN_PATHS = ("/api/v1/admin/", "/api/v1/drift/run", "/api/v1/alerts")


def acts_on_the_service(path: str) -> bool:
    return path.startswith(ADMIN_PATHS)


def test_every_admin_route_needs_the_admin_token(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"faults_enabled": True, "admin_token": SecretStr("adm-1")}
    )
    with TestClient(create_app(settings)) as client:
        operations = [
            (method.upper(), path.replace("{prediction_id}", str(uuid.uuid4())))
            for path, item in client.get("/openapi.json").json()["paths"].items()
            for method in item
        ]
        # Called by anyone, every route answers; exactly the acting ones ask for credentials.
        guarded = {
            (method, path)
            for method, path in operations
            if client.request(method, path).status_code == 401
        }
        assert guarded == {(m, p) for m, p in operations if acts_on_the_service(p)}
        assert {("POST", "/api/v1/drift/run"), ("POST", "/api/v1/admin/model/reload")} <= guarded
        for method, path in guarded:
            for headers in ({"Authorization": "Bearer wrong"}, {"X-API-Key": "adm-1"}):
                answer = client.request(method, path, headers=headers)
                assert answer.status_code == 401, (method, path, headers)
                assert answer.json()["error"] == "unauthorized"
    unset = settings.model_copy(update={"admin_token": None})
    with TestClient(create_app(unset)) as client:
        for method, path in guarded:
            answer = client.request(method, path, headers={"Authorization": "Bearer adm-1"})
            assert answer.status_code == 403, (method, path)


# No secret leaks


def test_no_key_or_token_appears_in_logs_error_answers_or_metrics(
    keyed: Settings, tmp_path: Path
) -> None:
    log_file = tmp_path / "secrets.log"
    admin_token = "adm-" + "7" * 40
    settings = keyed.model_copy(
        update={
            "admin_token": SecretStr(admin_token),
            "log_file": str(log_file),
            "log_level": "debug",
            "api_key_cache_seconds": 30,
            "rate_limit_per_minute": 1,
            "rate_limit_burst": 3,
        }
    )
    key = make_key(settings, "mobile-app")
    revoked = make_key(settings, "old-app")
    revoke(settings, revoked)
    wrong_key = "lw_" + "Z" * 43
    wrong_token = "adm-" + "8" * 40
    secrets = [key.key, revoked.key, wrong_key, admin_token, wrong_token]
    answers: list[Response] = []
    with TestClient(create_app(settings)) as client:
        for api_key in itertools.chain(secrets, [key.key] * 4):  # the last ones are rate limited
            answers.append(predict(client, {"X-API-Key": api_key}))
            answers.append(
                client.post("/api/v1/predict", data={"user_id": ""}, headers={"X-API-Key": api_key})
            )
            answers.append(stats(client, api_key))
        for token in secrets:
            answers.append(
                client.post("/api/v1/drift/run", headers={"Authorization": f"Bearer {token}"})
            )
            answers.append(
                client.post(
                    "/api/v1/admin/model/reload", headers={"Authorization": f"Basic {token}"}
                )
            )
        metrics = client.get("/metrics", headers={"X-API-Key": key.key}).text
    statuses = {answer.status_code for answer in answers}
    assert {200, 401, 422, 429} <= statuses  # right, wrong, invalid, limited
    # Stdout gets the very lines the file gets (one formatter renders each line once for both).
    shown = [
        metrics,
        log_file.read_text(),
        *(answer.text for answer in answers),
        *(json.dumps(dict(answer.headers)) for answer in answers),
    ]
    assert "mobile-app" in shown[1]  # the key's name is logged, the key is not
    for secret in secrets:
        for text in shown:
            assert secret not in text
            assert secret[-20:] not in text
