"""Liveness, readiness, model info, errors for unknown routes, and the OpenAPI docs."""

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.model.registry import bundled_model
from leafwatch.stack import free_port
from leafwatch.storage import db
from tests.conftest import image_bytes
from tests.scrape import total


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "database": True,
        "spool": True,
        "spool_depth": 0,
        "model": True,
        "model_version": "1",
        "problems": [],
    }


def test_model_info_reports_the_card(client: TestClient) -> None:
    info = client.get("/model/info").json()
    assert info["model_name"] == "banana_sigatoka_detector"
    assert info["model_version"] == "1"
    assert info["classes"] == list(CLASS_NAMES)
    assert info["input_size"] > 0
    assert len(info["onnx_sha256"]) == 64
    assert "metrics" in info


def test_unknown_routes_and_methods_answer_in_the_error_shape(client: TestClient) -> None:
    missing = client.get("/no/such/path")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "Not Found"}
    wrong_method = client.delete("/api/v1/predict")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


def test_a_broken_model_leaves_the_service_up_but_not_ready(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "broken", migrate_on_start=True)
    versions = settings.resolved_model_dir() / settings.model_name / "versions" / "1"
    versions.mkdir(parents=True)
    (versions / "model.onnx").write_bytes(b"not a model")
    (versions / "card.json").write_text('{"input_size": 128}')
    (versions.parent.parent / "aliases.json").write_text('{"production": "1", "history": ["1"]}')
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["model"] is False
        predict = client.post(
            "/api/v1/predict",
            files={"file": ("a.png", b"\x89PNG", "image/png")},
            data={"user_id": "u"},
        )
        assert predict.status_code == 503
        assert predict.json()["error"] == "model_not_ready"


def test_openapi_describes_every_route_and_field(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/predict",
        "/api/v1/feedback/submit",
        "/api/v1/feedback/stats",
        "/api/v1/predictions/{prediction_id}",
        "/api/v1/predictions",
        "/health",
        "/ready",
        "/model/info",
    ):
        assert path in paths, path
        for operation in paths[path].values():
            assert operation.get("description") or operation.get("summary"), path
    components = schema["components"]["schemas"]
    ours = {name: spec for name, spec in components.items() if "ValidationError" not in name}
    assert {"PredictionOut", "FeedbackIn", "FeedbackStatsOut", "ErrorOut"} <= set(ours)
    for name, spec in ours.items():
        for field, field_spec in spec.get("properties", {}).items():
            assert field_spec.get("description"), f"{name}.{field} has no description"
    upload = components["Body_predict_api_v1_predict_post"]["properties"]
    assert {"file", "user_id", "user_location"} <= set(upload)
    assert client.get("/docs").status_code == 200


def test_an_unmigrated_database_is_not_ready_and_says_what_to_run(
    tmp_path: Path, database_url: str
) -> None:
    settings = Settings(var_dir=tmp_path / "var", database_url=database_url, migrate_on_start=False)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["database"] is False
        assert "leafwatch db upgrade" in ready.json()["problems"][0]
        response = client.get("/api/v1/feedback/stats")
        assert response.status_code == 503
        assert response.json()["error"] == "database_unavailable"


def test_a_schema_behind_this_release_is_not_ready_and_one_ahead_of_it_is(
    client: TestClient, settings: Settings
) -> None:
    # Behind: a revision these migrations know, older than their head. Ahead: one they do not
    # know, which a newer release's migration Job wrote while this pod still serves (a rollout).
    previous = sorted(db.known_revisions() - {db.head_revision()})[-1]
    engine = db.make_engine(settings.resolved_database_url())
    try:
        for revision, code, status in [
            (previous, 503, "not_ready"),
            ("9999_from_a_newer_release", 200, "ready"),
        ]:
            with engine.begin() as connection:
                connection.execute(
                    text("UPDATE alembic_version SET version_num = :v"), {"v": revision}
                )
            ready = client.get("/ready")
            assert (ready.status_code, ready.json()["status"]) == (code, status), ready.json()
            assert revision in ready.json()["problems"][0]
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE alembic_version SET version_num = :v"), {"v": db.head_revision()}
            )
        engine.dispose()
    assert client.get("/ready").json()["problems"] == []


def test_a_promotion_in_the_local_registry_is_served_without_a_restart(
    settings: Settings,
) -> None:
    settings = Settings(**(settings.model_dump() | {"admin_token": "reload-admin"}))
    admin = {"Authorization": "Bearer reload-admin"}
    with TestClient(create_app(settings)) as client:
        registry = client.app.state.runtime.registry  # type: ignore[attr-defined]
        path, card = bundled_model()
        registry.promote(registry.register(path, card).version)
        assert client.get("/model/info").json()["model_version"] == "1"  # not yet looked for
        answer = client.post("/api/v1/admin/model/reload", headers=admin)
        assert answer.json() == {"model_version": "2", "changed": True}
        assert client.get("/model/info").json()["model_version"] == "2"
        assert client.get("/ready").json()["model_version"] == "2"
        registry.rollback()
        answer = client.post("/api/v1/admin/model/reload", headers=admin)
        assert answer.json() == {"model_version": "1", "changed": True}


def test_with_the_database_away_predictions_are_served_and_ready_says_degraded(
    tmp_path: Path,
) -> None:
    nobody = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"  # refuses connections
    settings = Settings(var_dir=tmp_path / "var", database_url=nobody)
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/api/v1/predict",
            files={"file": ("leaf.jpg", image_bytes(), "image/jpeg")},
            data={"user_id": "farmer-1"},
        )
        assert answer.status_code == 200, answer.text
        prediction = answer.json()
        feedback = client.post(
            "/api/v1/feedback/submit",
            json={
                "prediction_id": prediction["prediction_id"],
                "is_correct": True,
                "feedback_source": "web",
            },
        )
        assert feedback.status_code == 201, feedback.text
        assert feedback.json()["correct_class_name"] == prediction["predicted_class_name"]
        ready = client.get("/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "degraded"
        assert (body["database"], body["spool"], body["spool_depth"]) == (False, True, 2)
        assert "the database does not answer" in body["problems"]
        metrics = client.get("/metrics").text
        assert total(metrics, "spool_depth") == 2
        assert total(metrics, "spool_records_total", outcome="spooled") == 2
    spooled = list((tmp_path / "var" / "spool").glob("*.spool"))
    assert len(spooled) == 1, "kept at shutdown for the next process to replay"


def test_with_the_database_away_and_the_spool_off_the_service_is_not_ready(
    tmp_path: Path,
) -> None:
    nobody = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"
    settings = Settings(var_dir=tmp_path / "var", database_url=nobody, spool_enabled=False)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert (ready.json()["status"], ready.json()["spool"]) == ("not_ready", False)
        answer = client.post(
            "/api/v1/predict",
            files={"file": ("leaf.jpg", image_bytes(), "image/jpeg")},
            data={"user_id": "farmer-1"},
        )
        assert answer.status_code == 503
        assert answer.json()["error"] == "database_unavailable"
