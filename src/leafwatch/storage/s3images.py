"""Images in an S3-compatible bucket, under the local store's keys, for replicas that share no disk.

`s3://<bucket>/<prefix><h[:2]>/<h[2:4]>/<h>.<ext>`. An upload is a PUT, again when the object is
there already: its LastModified becomes this upload's, which is what retention counts from.
boto3 is the optional extra `[s3]`; importing this module does not need it.
"""

import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from leafwatch.errors import ImageStoreUnavailable
from leafwatch.storage.images import LocalImageStore, StagedImage, StoredImage, image_key

if TYPE_CHECKING:
    from leafwatch.config import Settings

log = structlog.stdlib.get_logger(__name__)

# What the stores write: anything else under the prefix is not LeafWatch's, and is left alone.
KEY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.[a-z0-9]+")
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
MISSING = {"NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True, slots=True)
class S3Location:
    """A bucket and a key prefix ('' or ending in '/')."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> "S3Location":
        """Read s3://BUCKET or s3://BUCKET/PREFIX; raises ValueError naming the URL."""
        match = re.fullmatch(r"s3://([A-Za-z0-9][A-Za-z0-9._-]*)(?:/(\S*))?", url)
        if match is None:
            raise ValueError(f"{url!r} is not s3://BUCKET or s3://BUCKET/PREFIX")
        prefix = (match[2] or "").strip("/")
        return cls(bucket=match[1], prefix=f"{prefix}/" if prefix else "")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(slots=True)
class _S3StagedImage:
    store: "S3ImageStore"
    data: bytes
    sha256: str

    def commit(self, *, extension: str) -> StoredImage:
        key = image_key(self.sha256, extension)
        self.store.write(key, self.data)
        return StoredImage(path=key, sha256=self.sha256)

    def discard(self) -> None:
        self.data = b""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An image in the bucket: its key (without the prefix), size and last upload."""

    key: str
    size: int
    last_modified: datetime


class S3ImageStore:
    """An ImageStore in an S3-compatible bucket, through a boto3 S3 client."""

    # DeleteObjects takes at most 1000 keys a call.
    delete_batch = 1000

    def __init__(self, client: Any, location: S3Location) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.client = client
        self.location = location
        # What S3 and the HTTP stack under boto3 raise; anything else is a bug, not an outage.
        self.errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

    def __str__(self) -> str:
        return str(self.location)

    def check(self) -> None:
        """Raise ImageStoreUnavailable, saying why, unless the bucket answers."""
        try:
            self.client.head_bucket(Bucket=self.location.bucket)
        except self.errors as exc:
            log.error("image bucket cannot be used", store=str(self.location), error=_reason(exc))
            raise ImageStoreUnavailable(
                f"the image bucket {self.location} cannot be used ({_reason(exc)}): check "
                "LEAFWATCH_IMAGE_STORE_URL, LEAFWATCH_S3_ENDPOINT_URL and the credentials"
            ) from exc

    def stage(self, data: bytes) -> StagedImage:
        """Hash the bytes and keep them for the commit; nothing reaches the bucket before it."""
        return _S3StagedImage(store=self, data=data, sha256=hashlib.sha256(data).hexdigest())

    def put(self, data: bytes, *, extension: str) -> StoredImage:
        """Store the image; storing the same content again only refreshes its time."""
        return self.stage(data).commit(extension=extension)

    def write(self, key: str, data: bytes) -> None:
        """Upload bytes under a key; raises ImageStoreUnavailable when S3 does not take them."""
        try:
            self.client.put_object(
                Bucket=self.location.bucket,
                Key=self.location.prefix + key,
                Body=data,
                ContentType=CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream"),
            )
        except self.errors as exc:
            raise self._unavailable("take", key, exc, told="the image could not be stored") from exc

    def get(self, path: str) -> bytes:
        """Read an image back; raises FileNotFoundError for a missing key or one not a key."""
        if not KEY.fullmatch(path):
            raise FileNotFoundError(path)
        try:
            answer = self.client.get_object(
                Bucket=self.location.bucket, Key=self.location.prefix + path
            )
            data: bytes = answer["Body"].read()
        except self.errors as exc:
            if _code(exc) in MISSING:
                raise FileNotFoundError(path) from None
            raise self._unavailable("give", path, exc, told="the image could not be read") from exc
        return data

    def objects(self, *, under: str = "") -> Iterator[StoredObject]:
        """The images under the prefix (narrowed to `under`, e.g. `ab/`), a page at a time."""
        prefix = self.location.prefix
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=prefix + under
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(prefix) :]
                    if KEY.fullmatch(key):
                        yield StoredObject(key, int(item["Size"]), item["LastModified"])
        except self.errors as exc:
            raise self._unavailable(
                "list", under or "its images", exc, told="the images could not be listed"
            ) from exc

    def prune(self, *, stored_before: datetime, dry_run: bool = False) -> int:
        """Delete images last uploaded before `stored_before`, in batches; returns how many.

        An upload of the same image between the listing and the delete is lost with it: S3 has no
        delete-if-unchanged for a PUT of the same bytes. Prune at quiet hours, or with a lifecycle.
        """
        cutoff = stored_before.timestamp()
        deleted, batch = 0, []
        for found in self.objects():
            if found.last_modified.timestamp() >= cutoff:
                continue
            if dry_run:
                deleted += 1
                continue
            batch.append(found.key)
            if len(batch) >= self.delete_batch:
                deleted += self._delete(batch)
                batch = []
        if batch:
            deleted += self._delete(batch)
        return deleted

    def _delete(self, keys: list[str]) -> int:
        prefix = self.location.prefix
        try:
            answer = self.client.delete_objects(
                Bucket=self.location.bucket,
                Delete={"Objects": [{"Key": prefix + key} for key in keys], "Quiet": True},
            )
        except self.errors as exc:
            raise self._unavailable(
                "delete", f"{len(keys)} images", exc, told="the images could not be deleted"
            ) from exc
        errors = answer.get("Errors", [])
        if errors:
            first = errors[0]
            reason = (
                f"the image bucket {self.location} refused to delete {len(errors)} of "
                f"{len(keys)} images, {first.get('Key')} first: {first.get('Message')}"
            )
            log.error("image bucket failed", store=str(self.location), error=reason)
            raise ImageStoreUnavailable("the images could not be deleted", reason=reason)
        return len(keys)

    def _unavailable(
        self, verb: str, what: str, exc: Exception, *, told: str
    ) -> ImageStoreUnavailable:
        log.error("image bucket failed", store=str(self.location), key=what, error=_reason(exc))
        # A client is told what happened, not the bucket's name or what S3 answered.
        return ImageStoreUnavailable(
            f"{told}; try again later",
            reason=f"the image bucket {self.location} could not {verb} {what}: {_reason(exc)}",
        )


def s3_client(settings: "Settings", *, connections: int = 10) -> Any:
    """A boto3 S3 client with the settings' endpoint, region, timeouts and retries."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ImageStoreUnavailable(
            f"LEAFWATCH_IMAGE_STORE_URL names an S3 bucket, which needs boto3: "
            f"pip install 'leafwatch[s3]' ({exc})"
        ) from None
    config = Config(
        connect_timeout=settings.s3_timeout_seconds,
        read_timeout=settings.s3_timeout_seconds,
        retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
        max_pool_connections=connections,
    )
    # A session of its own: boto3's default one is shared, and not safe to build clients from
    # in several threads. Credentials come from its usual chain (environment, files, roles).
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=config,
    )


def open_s3_store(url: str, settings: "Settings", *, connections: int = 10) -> S3ImageStore:
    """The store in the bucket `url` names, checked to answer; raises ImageStoreUnavailable."""
    store = S3ImageStore(s3_client(settings, connections=connections), S3Location.parse(url))
    store.check()
    return store


@dataclass(slots=True)
class CopyCounts:
    """What a copy did: images uploaded, found there already, gone before they could be read."""

    copied: int = 0
    present: int = 0
    vanished: int = 0


def count_images(source: LocalImageStore) -> int:
    """How many images a local store holds (a walk of its directories)."""
    return sum(1 for _ in source.image_keys())


def copy_images(
    source: LocalImageStore,
    target: S3ImageStore,
    *,
    jobs: int = 8,
    done: Callable[[str], None] = lambda _key: None,
) -> CopyCounts:
    """Copy every image of a local store to a bucket, skipping keys there with the same size.

    A first level (`ab/`) at a time, listed on both sides, so memory stays small and a run that
    stops resumes where it was. `done` is called once per image, whatever happened to it.
    """
    counts, lock = CopyCounts(), threading.Lock()

    def upload(key: str) -> None:
        try:
            data = (source.root / key).read_bytes()
        except FileNotFoundError:  # pruned meanwhile
            with lock:
                counts.vanished += 1
            return
        target.write(key, data)
        with lock:
            counts.copied += 1

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="leafwatch-copy") as pool:
        pending: dict[Future[None], str] = {}
        for first in _first_levels(source):
            there = {found.key: found.size for found in target.objects(under=f"{first}/")}
            for key in source.image_keys(under=first):
                try:
                    size = (source.root / key).stat().st_size
                except FileNotFoundError:
                    counts.vanished += 1
                    done(key)
                    continue
                if there.get(key) == size:
                    counts.present += 1
                    done(key)
                    continue
                while len(pending) >= 2 * jobs:  # a bounded queue: the store may hold millions
                    _finish(pending, done)
                pending[pool.submit(upload, key)] = key
        while pending:
            _finish(pending, done)
    return counts


def _finish(pending: dict[Future[None], str], done: Callable[[str], None]) -> None:
    finished, _running = wait(pending, return_when=FIRST_COMPLETED)
    for future in finished:
        future.result()  # an upload that failed stops the copy; a new run resumes it
        done(pending.pop(future))


def _first_levels(source: LocalImageStore) -> list[str]:
    if not source.root.is_dir():
        return []
    return sorted(path.name for path in source.root.glob("[0-9a-f][0-9a-f]") if path.is_dir())


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _reason(exc: Exception) -> str:
    code = _code(exc)
    return f"{code}: {exc}" if code and code not in str(exc) else str(exc) or type(exc).__name__
