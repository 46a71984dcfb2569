"""The dashboard in a real headless Chromium: it loads cleanly and every chart draws data."""

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.orm import Session

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.storage import db
from tests.conftest import image_bytes
from tests.monitor.test_drift import SAME, darker, store
from tests.servers import uvicorn_thread

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The README's picture; LEAFWATCH_UPDATE_SCREENSHOT=1 makes this test take it anew.
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
ADMIN = {"Authorization": "Bearer admin-s3cret"}
CHARTS = (
    "chart-requests",
    "chart-errors",
    "chart-latency",
    "chart-classes",
    "chart-accuracy",
    "chart-drift",
    "chart-rejected",
    "chart-usage",
)

pytestmark = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium-driver)",
)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium through Debian's chromedriver, keeping the console's messages."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    # The viewport itself 1280x900, whatever the window's frame takes.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield driver
    finally:
        driver.quit()


def predict(base: str, data: bytes, user: str = "farmer-1") -> httpx.Response:
    return httpx.post(
        f"{base}/api/v1/predict",
        files={"file": ("leaf.jpg", data, "image/jpeg")},
        data={"user_id": user},
        timeout=10,
    )


def keep_predicting(base: str, stop: threading.Event) -> None:
    """Traffic while the page watches: rates and percentiles need requests between refreshes."""
    while not stop.is_set():
        predict(base, image_bytes(), user="farmer-live")
        stop.wait(0.2)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_dashboard_draws_every_chart_without_console_errors(
    settings: Settings, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    settings = Settings(**(settings.model_dump() | {"admin_token": "admin-s3cret"}))
    engine = db.make_engine(settings.resolved_database_url())
    db.upgrade(engine)
    with Session(engine) as session:
        store(session, darker(SAME))  # a day of darker photos: a drift run with scores
    engine.dispose()
    app = create_app(settings)
    with uvicorn_thread(app) as base:
        made = [predict(base, image_bytes(), user=f"farmer-{n % 3}").json() for n in range(6)]
        for index, prediction in enumerate(made):
            verdict = {"prediction_id": prediction["prediction_id"], "feedback_source": "web"}
            if index == 0:
                verdict |= {"is_correct": False, "correct_class_name": "Stage6"}
            else:
                verdict |= {"is_correct": True}
            answer = httpx.post(f"{base}/api/v1/feedback/submit", json=verdict, timeout=10)
            assert answer.status_code == 201, answer.text
        assert predict(base, b"not a picture").status_code == 415
        drift = httpx.post(f"{base}/api/v1/drift/run", headers=ADMIN, timeout=30)
        assert drift.status_code == 200, drift.text

        stop = threading.Event()
        traffic = threading.Thread(target=keep_predicting, args=(base, stop), daemon=True)
        traffic.start()
        try:
            browser.get(f"{base}/dashboard?refresh=1")

            def points() -> dict[str, int]:
                return {
                    chart: int(browser.find_element("id", chart).get_attribute("data-points") or 0)
                    for chart in CHARTS
                }

            try:
                # A few intervals of live traffic, so the time series show lines, not dots.
                WebDriverWait(browser, 30, poll_frequency=0.5).until(
                    lambda _: (
                        all(count > 0 for count in points().values())
                        and points()["chart-latency"] >= 3 * 5
                    )
                )
            except Exception as exc:
                raise AssertionError(f"charts without data: {points()}") from exc
        finally:
            stop.set()
            traffic.join(timeout=10)
        time.sleep(1.5)  # a refresh without new traffic still draws the window's history

        drawn = browser.execute_script(
            "return Array.from(document.querySelectorAll('.chart')).map("
            "(el) => [el.id, (el.data || []).length, el.querySelectorAll('.main-svg').length])"
        )
        for chart, traces, svgs in drawn:
            assert traces > 0, f"{chart} has no Plotly traces"
            assert svgs > 0, f"{chart} was not drawn"
        assert browser.find_element("id", "fact-model").text.endswith("v1")
        assert "Refreshes every 1 s" in browser.find_element("id", "status").text
        picture = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(picture))
        assert picture.read_bytes().startswith(b"\x89PNG")
        if os.environ.get("LEAFWATCH_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(picture, SCREENSHOT)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == [], errors
