"""/metrics on a port of its own: real HTTP, only there, behind the token, handed over on stop."""

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.observe.metrics_server import RETRY_S
from leafwatch.stack import free_port
from tests.scrape import total
from tests.servers import eventually

HEALTH = {"endpoint": "/health", "status": "200"}


@pytest.fixture
def on_own_port(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", metrics_port=free_port())


def scrape(settings: Settings, **headers: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{settings.metrics_port}/metrics", headers=headers)


def test_metrics_are_served_on_their_own_port_and_not_on_the_api_port(
    on_own_port: Settings,
) -> None:
    with TestClient(create_app(on_own_port)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 404
        answer = scrape(on_own_port)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        assert total(answer.text, "api_requests_total", **HEALTH) == 1
        assert total(answer.text, "model_loaded") == 1  # figures computed at scrape time too
        openmetrics = scrape(on_own_port, Accept="application/openmetrics-text")
        assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")
        other = httpx.get(f"http://127.0.0.1:{on_own_port.metrics_port}/health")
        assert other.status_code == 404
    with pytest.raises(httpx.ConnectError):  # the port is let go when the app stops
        scrape(on_own_port)


def test_the_metrics_token_guards_the_metrics_port_too(on_own_port: Settings) -> None:
    settings = on_own_port.model_copy(update={"metrics_token": SecretStr("scrape-me")})
    with TestClient(create_app(settings)):
        refused = scrape(settings)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert scrape(settings, Authorization="Bearer wrong").status_code == 401
        assert scrape(settings, Authorization="Bearer scrape-me").status_code == 200


def test_a_second_process_stands_by_and_takes_the_port_over_when_the_first_stops(
    on_own_port: Settings, tmp_path: Path
) -> None:
    # Two apps in one process stand for two workers: each has its own registry, so the counts
    # show which one answers the scrape (workers would add up through their shared files).
    second_settings = on_own_port.model_copy(update={"var_dir": tmp_path / "second"})
    first = TestClient(create_app(on_own_port))
    with first, TestClient(create_app(second_settings)) as second:
        for _ in range(3):
            second.get("/health")
        assert total(scrape(on_own_port).text, "api_requests_total", **HEALTH) == 0  # the first's
        first.__exit__(None, None, None)

        def second_answers() -> bool:
            try:
                text = scrape(on_own_port).text
            except httpx.TransportError:
                return False
            return total(text, "api_requests_total", **HEALTH) == 3

        assert eventually(second_answers, timeout=RETRY_S * 3)


def test_a_metrics_port_that_cannot_be_bound_stops_the_start(on_own_port: Settings) -> None:
    # Not a port another worker holds, which is waited for, but an address this host lacks.
    settings = on_own_port.model_copy(update={"metrics_host": "192.0.2.1"})
    with pytest.raises(OSError, match="assign requested address"), TestClient(create_app(settings)):
        pass


def test_the_metrics_port_cannot_be_the_api_port(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="metrics_port 8000 is the API's port"):
        Settings(var_dir=tmp_path, port=8000, metrics_port=8000)
