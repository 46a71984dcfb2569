"""The built-in dashboard over HTTP on both databases, and the figures' arithmetic."""

import math
import re
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from leafwatch.api.dashboard import accepts_gzip, plotly_name
from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.service.dashboard import Snapshot, TrafficHistory, histogram_quantile
from leafwatch.service.quality import wilson_interval
from tests.api.test_metrics import judge, move_back, predict
from tests.conftest import image_bytes

INF = math.inf


@pytest.fixture
def dashboard_client(settings: Settings) -> Iterator[TestClient]:
    """A started app with the dashboard's routes."""
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_page_loads_only_what_leafwatch_serves(dashboard_client: TestClient) -> None:
    page = dashboard_client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assets = [url for url in urls if url.startswith("/dashboard/static/")]
    assert len(assets) == 3, urls
    assert f"/dashboard/static/{plotly_name()}" in assets
    for url in urls:
        assert url.startswith(("/", "data:")), f"{url} is not served by LeafWatch"
    for url in assets:
        answer = dashboard_client.get(url)
        assert answer.status_code == 200, url
        assert "javascript" in answer.headers["content-type"] or url.split("?")[0].endswith(".css")
        assert "immutable" in answer.headers["cache-control"]
    assert "{{" not in page.text


def test_the_chart_library_is_plotly_sent_compressed_when_asked(
    dashboard_client: TestClient,
) -> None:
    url = f"/dashboard/static/{plotly_name()}"
    packed = dashboard_client.get(url, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert b"plotly.js v" in packed.content[:200]  # httpx decodes the gzip body
    plain = dashboard_client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == packed.content
    assert int(plain.headers["content-length"]) > 1_000_000


def test_an_unknown_static_file_is_a_404_with_an_error_body(
    dashboard_client: TestClient,
) -> None:
    for name in ("nope.js", "..%2Fdashboard.html", "dashboard.html", "__init__.py"):
        answer = dashboard_client.get(f"/dashboard/static/{name}")
        assert answer.status_code == 404, name
        assert answer.json()["error"] == "not_found"


def test_the_data_is_complete_and_empty_before_any_traffic(dashboard_client: TestClient) -> None:
    data = dashboard_client.get("/api/v1/dashboard/data").json()
    assert data["model_version"] == "1"
    assert data["traffic"]["points"] == []  # one snapshot: no interval yet
    assert [w["window"] for w in data["predictions_by_class"]] == ["24h", "7d"]
    assert all(set(w["counts"].values()) == {0} for w in data["predictions_by_class"])
    assert len(data["predictions_by_class"][0]["counts"]) == 7
    assert data["accuracy"] == []
    assert data["drift"] is None
    assert set(data["rejected_uploads"].values()) == {0}
    assert data["usage"] == [
        {"window": w, "predictions": 0, "active_users": 0, "reviewed": 0, "feedback_rate": None}
        for w in ("24h", "7d")
    ]


def test_the_data_after_traffic_has_every_figure(
    dashboard_client: TestClient, settings: Settings
) -> None:
    client = dashboard_client
    client.get("/api/v1/dashboard/data")  # the first snapshot
    made = [predict(client, image_bytes()) for _ in range(5)]
    other = client.post(
        "/api/v1/predict",
        files={"file": ("leaf.jpg", image_bytes(), "image/jpeg")},
        data={"user_id": "farmer-2"},
    ).json()
    predict(client, b"not a picture")
    for prediction in made[:4]:
        judge(client, prediction, True, "mobile_app")
    judge(client, made[4], False, "expert_review")
    move_back(settings, other, timedelta(days=3))
    time.sleep(1.1)  # snapshots closer than a second are not kept
    data = client.get("/api/v1/dashboard/data").json()

    (point,) = data["traffic"]["points"]
    # 6 predictions + 1 refused upload + 5 verdicts; the dashboard's own call is not counted.
    assert point["requests_per_second"] * point["seconds"] == pytest.approx(12)
    assert point["by_status"]["4xx"] * point["seconds"] == pytest.approx(1)
    assert point["error_rate"] == 0
    assert 0 < point["p50_ms"] <= point["p95_ms"] <= point["p99_ms"]
    assert data["traffic"]["totals_by_status"]["2xx"] == 11

    day, week = data["predictions_by_class"]
    assert sum(day["counts"].values()) == 5
    assert sum(week["counts"].values()) == 6
    assert data["rejected_uploads"]["not_an_image"] == 1

    windows = {row["window"]: row for row in data["accuracy"]}
    assert set(windows) == {"1h", "24h", "7d", "30d"}
    hour = windows["1h"]
    assert (hour["reviewed"], hour["correct"], hour["accuracy"]) == (5, 4, 0.8)
    assert (hour["lower"], hour["upper"]) == pytest.approx(wilson_interval(4, 5))
    assert hour["lower"] < 0.8 < hour["upper"]
    confidences = [float(str(p["confidence"])) for p in [*made, other]]
    assert hour["estimated"] == pytest.approx(sum(confidences[:5]) / 5)
    assert windows["7d"]["estimated"] == pytest.approx(sum(confidences) / 6)

    usage = {row["window"]: row for row in data["usage"]}
    assert (usage["24h"]["predictions"], usage["24h"]["active_users"]) == (5, 1)
    assert (usage["7d"]["predictions"], usage["7d"]["active_users"]) == (6, 2)
    assert usage["7d"]["reviewed"] == 5
    assert usage["7d"]["feedback_rate"] == pytest.approx(5 / 6)

    time.sleep(1.1)
    quiet = client.get("/api/v1/dashboard/data").json()["traffic"]["points"][-1]
    assert quiet["requests_per_second"] == 0  # the page polling is not traffic
    assert quiet["p50_ms"] is None
    assert quiet["error_rate"] is None


def test_accuracy_is_estimated_before_any_feedback(dashboard_client: TestClient) -> None:
    made = [predict(dashboard_client, image_bytes()) for _ in range(3)]
    rows = dashboard_client.get("/api/v1/dashboard/data").json()["accuracy"]
    assert [row["window"] for row in rows] == ["1h", "24h", "7d", "30d"]
    mean = sum(float(str(p["confidence"])) for p in made) / 3
    for row in rows:
        assert row["reviewed"] == 0
        assert (row["accuracy"], row["lower"], row["upper"]) == (None, None, None)
        assert row["estimated"] == pytest.approx(mean)


def test_every_field_of_the_data_is_described(dashboard_client: TestClient) -> None:
    schema = dashboard_client.get("/openapi.json").json()
    assert "/api/v1/dashboard/data" in schema["paths"]
    assert "/dashboard" not in schema["paths"]
    components = schema["components"]["schemas"]
    for name in ("DashboardOut", "TrafficOut", "TrafficPointOut", "AccuracyOut", "DriftOut"):
        for field, spec in components[name]["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_quantiles_interpolate_inside_the_bucket_like_prometheus() -> None:
    buckets = [(0.1, 50.0), (0.5, 100.0), (INF, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.1 + 0.4 * 45 / 50)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)
    # Above the last finite bound, the answer is that bound.
    assert histogram_quantile(0.99, [(0.1, 10.0), (INF, 20.0)]) == pytest.approx(0.1)
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.5, []) is None


def snapshot(at: float, ok: float, errors: float = 0.0) -> Snapshot:
    count = ok + errors
    return Snapshot(
        at=at,
        by_status={"2xx": ok, "3xx": 0.0, "4xx": 0.0, "5xx": errors},
        buckets=((0.05, count), (INF, count)),
    )


def test_history_gives_rates_per_interval_and_starts_over_after_a_restart() -> None:
    history = TrafficHistory(keep_s=60, min_spacing_s=1)
    history.record(snapshot(100, ok=0))
    history.record(snapshot(110, ok=90, errors=10))
    history.record(snapshot(110.5, ok=500))  # too close to the previous one: not kept
    (point,) = history.traffic().points
    assert point.requests_per_second == pytest.approx(10)
    assert point.error_rate == pytest.approx(0.1)
    assert point.by_status["5xx"] == pytest.approx(1)
    history.record(snapshot(120, ok=5))  # the counters went down: the process restarted
    assert history.traffic().points == []
    history.record(snapshot(130, ok=25))
    history.record(snapshot(185, ok=45))  # the first one is older than a minute by now
    (point,) = history.traffic().points
    assert point.seconds == 55
    assert history.traffic().totals_by_status["2xx"] == 45


def test_gzip_is_sent_only_when_accepted() -> None:
    assert accepts_gzip("gzip, deflate, br")
    assert accepts_gzip("br;q=1.0, gzip;q=0.8")
    assert accepts_gzip("*")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("")
