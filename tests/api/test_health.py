"""Liveness, readiness, model info, errors for unknown routes, and the OpenAPI docs."""

from pathlib import Path

from fastapi.testclient import TestClient

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.model.registry import bundled_model


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "database": True,
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
