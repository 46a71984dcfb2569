"""The metrics catalogue in docs/metrics.md lists exactly what a running LeafWatch exposes."""

import re
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from leafwatch.app import create_app
from leafwatch.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def documented_metrics() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    table = text.split("<!-- metrics-table: start -->")[1].split("<!-- metrics-table: end -->")[0]
    return set(re.findall(r"^\| `([a-z_]+)`", table, re.M))


def test_every_exposed_metric_is_documented_and_every_documented_one_exposed(
    tmp_path: Path,
) -> None:
    with TestClient(create_app(Settings(var_dir=tmp_path / "var"))) as client:
        text = client.get("/metrics").text
    # Families, not samples: a family is listed (HELP and TYPE) even before it has data.
    exposed = {
        family.name
        for family in text_string_to_metric_families(text)
        if not family.name.startswith(("process_", "python_"))
    }
    assert {name.removesuffix("_total") for name in documented_metrics()} == exposed
