"""Benchmark: what the service adds to the bare cost of decode + inference.

Measures, in one run, predictions per second and p50/p99 latency of POST /api/v1/predict with 1 and
2 uvicorn workers, for 12 MP JPEGs and for small images, against decode + inference in one process.
Load comes from a separate process. Every upload gets a unique JPEG comment segment, so the
content-addressed store writes every image, as in production.

    .venv/bin/python benchmarks/predict.py [--requests 60] [--quick]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from leafwatch.simulate.traffic import unique_jpeg


def leaf_image(width: int, height: int) -> bytes:
    """A Stage4 leaf rendered at the given camera resolution, as JPEG."""
    from leafwatch.model.synth import Nuisance, leaf_jpeg

    nuisance = Nuisance(resolution=((width, height),), jpeg_quality=(90, 90))
    return leaf_jpeg(4, seed=2024, index=0, nuisance=nuisance)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bare(data: bytes, count: int) -> dict[str, float]:
    """Decode + inference in this process, one image after another."""
    from leafwatch.model.classifier import OnnxClassifier
    from leafwatch.model.preprocess import decode_image
    from leafwatch.model.registry import bundled_model

    path, card = bundled_model()
    classifier = OnnxClassifier(path, card, version="bench", threads=1)
    for _ in range(5):
        classifier.predict(decode_image(data, max_bytes=10**8, max_pixels=10**9).image)
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        classifier.predict(decode_image(data, max_bytes=10**8, max_pixels=10**9).image)
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    return summary(latencies, count / elapsed)


def breakdown(data: bytes, count: int) -> dict[str, float]:
    """Median milliseconds of each step of the service's own work, in one process."""
    from leafwatch.config import Settings
    from leafwatch.model.preprocess import decode_image
    from leafwatch.runtime import open_runtime
    from leafwatch.storage import queries
    from leafwatch.storage.tables import Prediction, utcnow

    with tempfile.TemporaryDirectory() as scratch:
        runtime = open_runtime(Settings(var_dir=Path(scratch)))
        predictor = runtime.predictor()
        steps: dict[str, list[float]] = {"image store (sha256 + write)": [], "database row": []}
        for index in range(count + 5):
            body = unique_jpeg(data, index)
            decoded = decode_image(body, max_bytes=10**8, max_pixels=10**9)
            output = predictor.classifier.predict(decoded.image)
            t0 = time.perf_counter()
            stored = predictor.images.put(body, extension="jpg")
            t1 = time.perf_counter()
            row = Prediction(
                id=uuid.uuid4(),
                user_id="bench",
                user_location=None,
                image_path=stored.path,
                image_size_kb=len(body) / 1024,
                image_width=decoded.width,
                image_height=decoded.height,
                image_hash=stored.sha256,
                predicted_class_id=output.class_id,
                predicted_class_name="Stage4",
                confidence=output.confidence,
                model_version="1",
                model_name="bench",
                inference_time_ms=1.0,
                timestamp=utcnow(),
                meta={"probabilities": [float(p) for p in output.probabilities]},
            )
            with runtime.sessions() as session:
                queries.add(session, row=row)
            t2 = time.perf_counter()
            if index >= 5:
                steps["image store (sha256 + write)"].append((t1 - t0) * 1000)
                steps["database row"].append((t2 - t1) * 1000)
        runtime.close()
    return {name: statistics.median(values) for name, values in steps.items()}


def summary(latencies: list[float], rate: float) -> dict[str, float]:
    return {
        "rps": rate,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 99),
    }


def load(url: str, image_path: str, count: int, concurrency: int) -> dict[str, float]:
    """Send `count` predictions with `concurrency` clients; runs in its own process."""
    data = Path(image_path).read_bytes()

    def one(client: httpx.Client) -> float:
        body = unique_jpeg(data, uuid.uuid4().int)  # unique content, same decode work
        t0 = time.perf_counter()
        response = client.post(
            f"{url}/api/v1/predict",
            files={"file": ("leaf.jpg", body, "image/jpeg")},
            data={"user_id": "bench"},
        )
        response.raise_for_status()
        return (time.perf_counter() - t0) * 1000

    with httpx.Client(timeout=60) as warm:
        for _ in range(3):
            one(warm)
        # The floor: a request that does no work, through the same client, server and loopback.
        floor = []
        for _ in range(50):
            t0 = time.perf_counter()
            warm.get(f"{url}/health").raise_for_status()
            floor.append((time.perf_counter() - t0) * 1000)
    clients = [httpx.Client(timeout=60) for _ in range(concurrency)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(lambda i: one(clients[i % concurrency]), range(count)))
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    return {**summary(latencies, count / elapsed), "floor": statistics.median(floor)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(workers: int, var_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "LEAFWATCH_VAR_DIR": str(var_dir)}
    log = (var_dir / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "leafwatch",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the service did not become ready")


def measure_service(
    workers: int, image_path: str, count: int, concurrency: int
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        process, url = serve(workers, Path(scratch))
        try:
            output = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--load",
                    url,
                    image_path,
                    str(count),
                    str(concurrency),
                ],
                check=False,
                capture_output=True,
                text=True,
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
        if output.returncode != 0:
            server_log = (Path(scratch) / "serve.log").read_text()[-3000:]
            raise RuntimeError(f"load generator failed:\n{output.stderr}\nserver:\n{server_log}")
    result: dict[str, float] = json.loads(output.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="requests per measurement")
    parser.add_argument("--load", nargs=4, metavar=("URL", "IMAGE", "COUNT", "CONCURRENCY"))
    args = parser.parse_args()
    if args.load:
        url, image, count, concurrency = args.load
        print(json.dumps(load(url, image, int(count), int(concurrency))))
        return

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        images = {
            "12 MP JPEG (4000x3000)": leaf_image(4000, 3000),
            "small JPEG (320x240)": leaf_image(320, 240),
        }
        for label, data in images.items():
            image_path = Path(scratch) / f"{uuid.uuid4().hex}.jpg"
            image_path.write_bytes(data)
            baseline = bare(data, args.requests)
            rows.append(
                (label, f"bare decode + inference ({len(data) // 1024} KiB)", baseline, 1.0)
            )
            for workers in (1, 2):
                # Sequential requests measure latency; 2 clients per worker measure throughput.
                sequential = measure_service(workers, str(image_path), args.requests, 1)
                parallel = measure_service(workers, str(image_path), args.requests, 2 * workers)
                ratio = sequential["p50"] / baseline["p50"]
                rows.append((label, f"service, {workers} worker(s), 1 client", sequential, ratio))
                rows.append(
                    (
                        label,
                        f"service, {workers} worker(s), {2 * workers} clients",
                        parallel,
                        parallel["p50"] / baseline["p50"],
                    )
                )
    print("Where the service's own time goes (12 MP, SQLite, median ms):")
    for step, ms in breakdown(images["12 MP JPEG (4000x3000)"], args.requests).items():
        print(f"  {step}: {ms:.2f}")
    print()
    print(
        "| image | setup | predictions/s | p50 ms | p99 ms | p50 / bare p50 | GET /health p50 ms |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, setup, figures, ratio in rows:
        floor = f"{figures['floor']:.1f}" if "floor" in figures else ""
        print(
            f"| {label} | {setup} | {figures['rps']:.1f} | {figures['p50']:.1f} | "
            f"{figures['p99']:.1f} | {ratio:.2f} | {floor} |"
        )


if __name__ == "__main__":
    main()
