"""What /metrics answers: formats, promtool's verdict, the error-rate window, the token, caching."""

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.core import CounterMetricFamily

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.observe.exposition import ErrorRateWindow, PeriodCache
from leafwatch.storage.queries import VersionAccuracy
from tests.conftest import image_bytes
from tests.scrape import total


def requests_family(**counts: tuple[int, int]) -> list[CounterMetricFamily]:
    """`api_requests_total` with, per endpoint, (2xx answers, 5xx answers)."""
    family = CounterMetricFamily("api_requests", "", labels=["method", "endpoint", "status"])
    for endpoint, (good, bad) in counts.items():
        family.add_metric(["GET", f"/{endpoint}", "200"], good)
        family.add_metric(["GET", f"/{endpoint}", "503"], bad)
    return [family]


def test_error_rate_covers_the_window_and_forgets_older_errors() -> None:
    window = ErrorRateWindow(300)
    window.update(0, requests_family(a=(0, 0)))
    assert window.update(60, requests_family(a=(90, 10))) == {"/a": 0.1}
    # At 400 s the baseline is the 60 s reading: the early errors have left the window.
    assert window.update(400, requests_family(a=(190, 10))) == {"/a": 0.0}
    assert window.update(500, requests_family(a=(190, 10), b=(1, 3))) == {"/a": 0.0, "/b": 0.75}


def test_error_rate_is_zero_without_requests_in_the_window() -> None:
    window = ErrorRateWindow(300)
    window.update(0, requests_family(a=(5, 5)))
    assert window.update(10, requests_family(a=(5, 5))) == {"/a": 0.0}


def test_accuracy_is_computed_once_per_period_as_of_its_start() -> None:
    calls: list[float] = []

    def compute(as_of: float) -> list[VersionAccuracy]:
        calls.append(as_of)
        return [VersionAccuracy("1", "1h", len(calls), 1)]

    cache = PeriodCache(compute, period_s=30)
    assert cache.figures(now=1000.0) == cache.figures(now=1019.9)
    cache.figures(now=1020.0)
    assert calls == [990.0, 1020.0]


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(var_dir=tmp_path / "var")), raise_server_exceptions=False)


def test_text_format_by_default_and_openmetrics_when_asked(client: TestClient) -> None:
    with client:
        plain = client.get("/metrics")
        assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "# EOF" not in plain.text
        open_metrics = client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.endswith("# EOF\n")


def test_promtool_finds_no_problem_in_a_busy_scrape(client: TestClient) -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: `make test` installs it (Debian package prometheus)")
    with client:
        answer = client.post(
            "/api/v1/predict",
            files={"file": ("leaf.jpg", image_bytes(), "image/jpeg")},
            data={"user_id": "farmer-1"},
        )
        client.post("/api/v1/predict", files={"file": ("x", b"nope")}, data={"user_id": "u"})
        client.post(
            "/api/v1/feedback/submit",
            json={"prediction_id": answer.json()["prediction_id"], "is_correct": False},
        )
        client.get(f"/api/v1/predictions/{uuid.uuid4()}")
        client.get("/missing")
        text = client.get("/metrics").text
    assert "feedback_submissions_total" in text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("from_file", [False, True])
def test_a_configured_token_guards_metrics(tmp_path: Path, from_file: bool) -> None:
    token = "s3cret-scraper-token"
    if from_file:
        (tmp_path / "token").write_text(token + "\n")
        settings = Settings(var_dir=tmp_path / "var", metrics_token_file=tmp_path / "token")
    else:
        settings = Settings(var_dir=tmp_path / "var", metrics_token=token)
    with TestClient(create_app(settings)) as client:
        missing = client.get("/metrics")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"] == "unauthorized"
        wrong = {"Authorization": "Bearer wrong-\xfc-token".encode("latin-1")}
        assert client.get("/metrics", headers=wrong).status_code == 401
        good = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert good.status_code == 200
        assert total(good.text, "api_requests_total", endpoint="/metrics", status="401") == 2
        assert client.get("/health").status_code == 200  # only /metrics is guarded
