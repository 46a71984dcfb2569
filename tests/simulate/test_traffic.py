"""The traffic: unique uploads from a small pool, and a driver that predicts and gives verdicts."""

import asyncio
import hashlib
import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.model.preprocess import decode_image
from leafwatch.model.synth import leaf_jpeg
from leafwatch.simulate.scenarios import Traffic
from leafwatch.simulate.traffic import Driver, LeafPool, PhaseTally, TrafficStats, unique_jpeg
from tests.servers import uvicorn_thread


def test_a_unique_upload_is_the_same_picture_with_other_bytes() -> None:
    photo = leaf_jpeg(3, seed=1, index=0)
    first, second = unique_jpeg(photo, 1), unique_jpeg(photo, 2)
    assert len({hashlib.sha256(data).digest() for data in (photo, first, second)}) == 3
    pixels = [np.asarray(Image.open(io.BytesIO(data))) for data in (photo, first, second)]
    assert (pixels[0] == pixels[1]).all()
    assert (pixels[0] == pixels[2]).all()
    # LeafWatch refuses bytes after a JPEG's end; a comment segment inside it is fine.
    decoded = decode_image(first, max_bytes=10**7, max_pixels=10**7)
    assert decoded.image.size == Image.open(io.BytesIO(photo)).size


def test_a_unique_upload_needs_a_jpeg() -> None:
    with pytest.raises(ValueError, match="not a JPEG"):
        unique_jpeg(b"\x89PNG", 1)


def test_the_pool_draws_classes_in_the_traffics_proportions() -> None:
    photos = {("field", class_id): [leaf_jpeg(0, seed=1, index=0)] for class_id in range(7)}
    pool = LeafPool(photos, seed=3)  # type: ignore[arg-type]
    late_only = Traffic(class_weights=(0, 0, 0, 0, 0, 1, 3))
    drawn = [pool.draw(late_only)[0] for _ in range(400)]
    assert set(drawn) == {5, 6}
    assert 0.65 < drawn.count(6) / len(drawn) < 0.85
    assert pool.serial == 400


def test_no_photo_comes_back_before_every_other_of_its_class_was_sent() -> None:
    photos = [unique_jpeg(leaf_jpeg(2, seed=1, index=0), serial) for serial in range(5)]
    pool = LeafPool({("field", 2): photos}, seed=8)
    only_stage2 = Traffic(class_weights=(0, 0, 1, 0, 0, 0, 0))
    sent = [pool.draw(only_stage2)[1] for _ in range(10)]
    originals = [photos.index(unique_jpeg_original(upload)) for upload in sent]
    assert sorted(originals[:5]) == sorted(originals[5:]) == list(range(5))


def unique_jpeg_original(upload: bytes) -> bytes:
    """The pool's photo an upload was made from: without the comment segment added to it."""
    length = int.from_bytes(upload[4:6], "big")
    return upload[:2] + upload[4 + length :]


def test_rendering_makes_each_cameras_photos_of_every_class() -> None:
    advanced = []
    pool = LeafPool.render(
        ["field", "new-camera"], per_class=1, seed=5, advance=lambda: advanced.append(1)
    )
    assert len(advanced) == 14
    assert sorted(pool.images) == sorted(
        [(camera, class_id) for camera in ("field", "new-camera") for class_id in range(7)]
    )
    field = Image.open(io.BytesIO(pool.images["field", 0][0]))
    new = Image.open(io.BytesIO(pool.images["new-camera", 0][0]))
    assert max(new.size) == 640 > max(field.size)
    darker = np.asarray(new.convert("L")).mean() < np.asarray(field.convert("L")).mean()
    assert darker


def test_a_tally_gives_accuracy_per_version_and_latency_quantiles() -> None:
    tally = PhaseTally(verdicts={"1": [9, 10], "2": [1, 10]}, latencies=[0.01] * 19 + [1.0])
    assert tally.accuracy("1") == 0.9
    assert tally.accuracy("2") == 0.1
    assert tally.accuracy() == 0.5
    assert tally.accuracy("3") is None
    p50, p95 = tally.latency_quantiles() or (0, 0)
    assert p50 == pytest.approx(0.01)
    assert p95 > 0.01


def test_the_driver_predicts_at_the_rate_and_sends_true_verdicts(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", migrate_on_start=True)
    pool = LeafPool.render(["field"], per_class=2, seed=11)
    stats = TrafficStats()

    async def drive(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            driver = Driver(client, pool, stats, seed=1)
            until = time.monotonic() + 2.0
            traffic = Traffic(feedback_share=1.0)
            await driver.run(traffic, rate=10, phase=0, done=lambda: time.monotonic() > until)
            await driver.drain(timeout=10)

    with uvicorn_thread(create_app(settings)) as url:
        asyncio.run(drive(url))
        feedback = httpx.get(f"{url}/api/v1/feedback/stats", params={"days": 1}).json()
    tally = stats.tally(0)
    assert 15 <= tally.sent <= 25
    assert tally.answered == tally.sent
    assert tally.feedback_sent == tally.answered
    right, total = tally.verdicts["1"]
    assert total == tally.answered
    # LeafWatch's realized accuracy is the simulator's truth, verdict for verdict.
    assert feedback["reviewed_predictions"] == total
    assert feedback["correct"] == right
    assert right / total > 0.9
