"""A real S3-compatible server for the image store tests, and a fresh bucket per test."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leafwatch.config import Settings
from tests.s3 import REGION, S3Server, rclone_s3


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One `rclone serve s3` for the session; each test has buckets of its own."""
    directory = tmp_path_factory.mktemp("s3")
    with rclone_s3(directory / "buckets", log=directory / "rclone.log") as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket, with the server's credentials in the environment."""
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    name = f"leafwatch-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_settings(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> Settings:
    """Settings whose image store is the prefix `images/` of the test's bucket."""
    return Settings(
        var_dir=tmp_path / "var",
        image_store_url=f"s3://{s3_bucket}/images",
        s3_endpoint_url=s3_server.endpoint,
        s3_region=REGION,
    )
