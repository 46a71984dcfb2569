"""The traffic: generated leaf photos sent to POST /api/v1/predict, and verdicts with the truth.

Rendering a leaf costs some 15 ms, so each camera's photos are rendered once, into a pool, and
reused; a JPEG comment segment with a serial number makes every upload unique (bytes after the
image's end would be refused as a second file).
"""

import asyncio
import random
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx
import numpy as np

from leafwatch.model.labels import CLASS_NAMES, NUM_CLASSES
from leafwatch.model.synth import Nuisance, leaf_jpeg
from leafwatch.simulate.scenarios import Camera, Traffic

PREDICT = "/api/v1/predict"
FEEDBACK = "/api/v1/feedback/submit"
# The simulated farmers: enough for usage analytics to show many users, few enough to recur.
USERS = 40
# Seconds of answers the live latency figures cover.
LATENCY_WINDOW_S = 30.0
# The phones the model learned from, and a new model that takes darker, larger, softer photos.
CAMERAS: dict[Camera, Nuisance] = {
    "field": Nuisance(),
    "new-camera": Nuisance(
        brightness=(0.45, 0.65),
        blur=(0.4, 1.0),
        resolution=((480, 640), (640, 480)),
        jpeg_quality=(70, 85),
    ),
}


def unique_jpeg(jpeg: bytes, serial: int) -> bytes:
    """The same JPEG with a comment segment (COM, 0xFFFE) carrying `serial` after its SOI."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG: it does not start with SOI")
    payload = b"leafwatch-simulate %d" % serial
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


class LeafPool:
    """Rendered leaf photos per (camera, class), drawn with the traffic's class mix.

    Each class's photos are dealt like a shuffled deck: none comes back before all the others
    have been sent. A drift window that holds no photo twice is a sample of fresh leaves; one
    drawn with replacement from a small pool would look like drift (the pool's own quirks).
    """

    def __init__(self, images: dict[tuple[Camera, int], list[bytes]], *, seed: int = 0) -> None:
        self.images = images
        self.rng = random.Random(seed)
        self.serial = 0
        self.decks: dict[tuple[Camera, int], list[bytes]] = {}

    @classmethod
    def render(
        cls,
        cameras: Iterable[Camera],
        *,
        per_class: int,
        seed: int,
        advance: Callable[[], None] = lambda: None,
    ) -> "LeafPool":
        """Render `per_class` photos of every class for each camera; `advance` after each one."""
        if per_class < 1:
            raise ValueError(f"per_class must be at least 1, got {per_class}")
        images: dict[tuple[Camera, int], list[bytes]] = {}
        for camera in cameras:
            for class_id in range(NUM_CLASSES):
                photos = []
                for index in range(per_class):
                    # Indices far from the training ones (0..1000 of seed 7): leaves never seen.
                    photo = leaf_jpeg(
                        class_id, seed=seed, index=100_000 + index, nuisance=CAMERAS[camera]
                    )
                    photos.append(photo)
                    advance()
                images[camera, class_id] = photos
        return cls(images, seed=seed)

    def draw(self, traffic: Traffic) -> tuple[int, bytes]:
        """A true class drawn from the traffic's mix, and a unique upload of one of its photos."""
        class_id = self.rng.choices(range(NUM_CLASSES), weights=traffic.class_weights)[0]
        deck = self.decks.get((traffic.camera, class_id))
        if not deck:
            deck = self.decks[traffic.camera, class_id] = list(
                self.images[traffic.camera, class_id]
            )
            self.rng.shuffle(deck)
        photo = deck.pop()
        self.serial += 1
        return class_id, unique_jpeg(photo, self.serial)


@dataclass
class PhaseTally:
    """Counts of one phase's requests (by the phase they were sent in)."""

    sent: int = 0
    answered: int = 0
    server_errors: int = 0  # 5xx answers
    client_errors: int = 0  # 4xx answers (rate limits, a refused upload)
    failures: int = 0  # no answer: refused connection, timeout
    skipped: int = 0  # not sent: too many requests already waiting for an answer
    feedback_sent: int = 0
    feedback_failed: int = 0
    # Per model version that answered: [right, predictions] against the true class.
    verdicts: dict[str, list[int]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def accuracy(self, version: str | None = None) -> float | None:
        """Share of predictions whose class was the true one (of a version, or of all)."""
        rows = [self.verdicts[version]] if version in self.verdicts else []
        if version is None:
            rows = list(self.verdicts.values())
        right, total = sum(row[0] for row in rows), sum(row[1] for row in rows)
        return right / total if total else None

    def latency_quantiles(self) -> tuple[float, float] | None:
        """p50 and p95 of the phase's answered requests, in seconds."""
        if not self.latencies:
            return None
        p50, p95 = np.quantile(np.asarray(self.latencies), [0.5, 0.95])
        return float(p50), float(p95)


class TrafficStats:
    """Live figures of the traffic: per phase, and over the last seconds."""

    def __init__(self) -> None:
        self.phases: dict[int, PhaseTally] = {}
        self.recent: deque[tuple[float, float]] = deque()  # (answered at, latency)
        self.version: str | None = None  # the model version of the latest answer
        self.in_flight = 0

    def tally(self, phase: int) -> PhaseTally:
        """The counts of one phase."""
        return self.phases.setdefault(phase, PhaseTally())

    def total(self) -> PhaseTally:
        """The counts of every phase added up."""
        total = PhaseTally()
        for tally in self.phases.values():
            for name in ("sent", "answered", "server_errors", "client_errors", "failures"):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
            total.skipped += tally.skipped
            total.feedback_sent += tally.feedback_sent
            total.feedback_failed += tally.feedback_failed
        return total

    def answered(self, latency: float) -> None:
        """Note an answer's latency for the live figures."""
        now = time.monotonic()
        self.recent.append((now, latency))
        while self.recent and self.recent[0][0] < now - LATENCY_WINDOW_S:
            self.recent.popleft()

    def recent_quantiles(self) -> tuple[float, float] | None:
        """p50 and p95 of the answers of the last LATENCY_WINDOW_S seconds."""
        if not self.recent:
            return None
        p50, p95 = np.quantile(np.asarray([latency for _, latency in self.recent]), [0.5, 0.95])
        return float(p50), float(p95)


class Driver:
    """Sends predictions at a steady rate and verdicts on a share of them."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        pool: LeafPool,
        stats: TrafficStats,
        *,
        max_in_flight: int = 64,
        seed: int = 0,
    ) -> None:
        self.client = client
        self.pool = pool
        self.stats = stats
        self.max_in_flight = max_in_flight
        self.rng = random.Random(seed)
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(
        self, traffic: Traffic, *, rate: float, phase: int, done: Callable[[], bool]
    ) -> None:
        """Send `rate` predictions a second, evenly spaced, until `done()` says so."""
        interval = 1.0 / rate
        next_at = time.monotonic()
        tally = self.stats.tally(phase)
        while not done():
            if self.stats.in_flight < self.max_in_flight:
                task = asyncio.create_task(self.one(traffic, tally))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            else:
                tally.skipped += 1
            next_at += interval
            # Behind schedule (a slow event loop): skip ahead rather than send a burst.
            next_at = max(next_at, time.monotonic() - interval)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the requests still waiting for an answer."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)

    async def one(self, traffic: Traffic, tally: PhaseTally) -> None:
        """One prediction, and maybe a verdict on it."""
        truth, photo = self.pool.draw(traffic)
        user = f"sim-farmer-{self.rng.randrange(USERS):02d}"
        tally.sent += 1
        self.stats.in_flight += 1
        started = time.monotonic()
        try:
            answer = await self.client.post(
                PREDICT,
                files={"file": ("leaf.jpg", photo, "image/jpeg")},
                data={"user_id": user, "user_location": "simulated farm"},
            )
        except httpx.HTTPError:
            tally.failures += 1
            return
        finally:
            self.stats.in_flight -= 1
        latency = time.monotonic() - started
        if answer.status_code >= 500:
            tally.server_errors += 1
        elif answer.status_code >= 400:
            tally.client_errors += 1
        if answer.status_code >= 400:
            return
        tally.answered += 1
        tally.latencies.append(latency)
        self.stats.answered(latency)
        body = answer.json()
        version = str(body["model_version"])
        self.stats.version = version
        right = body["predicted_class_id"] == truth
        counts = tally.verdicts.setdefault(version, [0, 0])
        counts[0] += int(right)
        counts[1] += 1
        if self.rng.random() < traffic.feedback_share:
            await self.feedback(body["prediction_id"], truth=truth, right=right, tally=tally)

    async def feedback(
        self, prediction_id: str, *, truth: int, right: bool, tally: PhaseTally
    ) -> None:
        """The expert's verdict: the true class is known."""
        verdict: dict[str, object] = {
            "prediction_id": prediction_id,
            "is_correct": right,
            "feedback_source": "expert_review",
        }
        if not right:
            verdict["correct_class_name"] = CLASS_NAMES[truth]
        try:
            answer = await self.client.post(FEEDBACK, json=verdict)
        except httpx.HTTPError:
            tally.feedback_failed += 1
            return
        if answer.status_code == 201:
            tally.feedback_sent += 1
        else:
            tally.feedback_failed += 1
