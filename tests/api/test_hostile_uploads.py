"""A corpus of hostile uploads against a real server: each refused with a 4xx in the error shape,
in bounded time, while the server's peak memory stays bounded.

The corpus is built here, byte by byte: decompression bombs, polyglots, scan bombs, broken
metadata, wrong content types, bodies far over the limit. Peak memory is the server process's
high-water mark (VmHWM in /proc), reset before each upload (clear_refs), so each is measured alone.
"""

import io
import itertools
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.servers import leafwatch_serve

# How far one upload may raise the server's peak memory: the largest image accepted, 40 megapixels
# at 4 bytes, decoded and once copied (alpha is premultiplied to reduce it), is 320 MB. Before
# decoding was hardened a 16-bit PNG of 36 megapixels took 800 MB.
PEAK_GROWTH_BYTES = 350 * 1024 * 1024
# Two large decodes run at once per process, however many uploads arrive together.
CONCURRENT_PEAK_GROWTH_BYTES = 2 * PEAK_GROWTH_BYTES
SECONDS_PER_UPLOAD = 5.0


def encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, pixels: bytes, *, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG from raw IDAT data (already compressed) and whatever IHDR says."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def png_bomb(width: int, height: int, *, depth: int = 8, colour: int = 0) -> bytes:
    """A real PNG of zeros: megapixels that compress a thousandfold."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = b"\0" * (1 + width * channels * depth // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png(width, height, data, depth=depth, colour=colour)


def png_with_chunk(kind: bytes, data: bytes) -> bytes:
    """A valid 8x8 PNG with one extra chunk before its pixels."""
    valid = encode(Image.new("RGB", (8, 8), (40, 130, 50)), "PNG")
    return valid[:33] + chunk(kind, data) + valid[33:]


def leaf_jpeg(size: tuple[int, int] = (64, 48), **save: object) -> bytes:
    return encode(Image.new("RGB", size, (40, 130, 50)), "JPEG", **save)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is rewritten to declare another size."""
    data = leaf_jpeg((16, 16))
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def jpeg_with_segment(marker: int, payload: bytes) -> bytes:
    data = leaf_jpeg()
    return data[:2] + struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload + data[2:]


def exif_jpeg(tiff: bytes) -> bytes:
    return jpeg_with_segment(0xE1, b"Exif\0\0" + tiff)


def exif_loop() -> bytes:
    """IFD0 points at itself, as its next IFD and as its Exif sub-IFD."""
    entries = struct.pack("<HHII", 0x8769, 4, 1, 8) + struct.pack("<HHII", 0x0112, 3, 1, 6)
    return exif_jpeg(
        b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + b"\x08\0\0\0"
    )


def exif_nested(depth: int) -> bytes:
    """Exif sub-IFDs nested `depth` deep, each pointing at the next."""
    ifds = b"".join(
        struct.pack("<H", 1) + struct.pack("<HHII", 0x8769, 4, 1, 8 + 18 * (k + 1)) + b"\0\0\0\0"
        for k in range(depth)
    )
    return exif_jpeg(b"II*\0" + struct.pack("<I", 8) + ifds)


def exif_huge_counts() -> bytes:
    """An IFD that declares 65535 entries, the first of them 2 GB long, in a few bytes."""
    entry = struct.pack("<HHII", 0x010E, 2, 0x7FFFFFFF, 26)
    return exif_jpeg(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 0xFFFF) + entry)


def scan_bomb(scans: int) -> bytes:
    """A progressive 35-megapixel JPEG whose smallest scan is repeated `scans` times."""
    data = leaf_jpeg((7000, 5000), progressive=True, quality=90)
    starts = [index for index in range(len(data) - 1) if data[index : index + 2] == b"\xff\xda"]
    smallest = min(itertools.pairwise(starts), key=lambda pair: pair[1] - pair[0])
    scan = data[smallest[0] : smallest[1]]
    return data[:-2] + scan * scans + b"\xff\xd9"


def webp_declaring(width: int, height: int) -> bytes:
    """An extended WebP header (VP8X) declaring a canvas, and nothing else."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0" * 4
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def gif_declaring(width: int, height: int) -> bytes:
    """A one-pixel GIF whose logical screen declares another size."""
    data = encode(Image.new("P", (1, 1)), "GIF")
    return data[:6] + struct.pack("<HH", width, height) + data[10:]


def tiff_declaring(width: int, height: int) -> bytes:
    """A one-pixel TIFF whose width and height entries are rewritten."""
    data = bytearray(encode(Image.new("L", (1, 1)), "TIFF"))
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        (tag,) = struct.unpack_from("<H", data, entry)
        if tag in (256, 257):
            data[entry : entry + 12] = struct.pack("<HHII", tag, 4, 1, (width, height)[tag - 256])
    return bytes(data)


SVG_ENTITIES = (
    b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    b'<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<svg xmlns="http://www.w3.org/2000/svg"><text>&c;&x;</text></svg>'
)

Build = Callable[[], bytes]

# name: (how to build the upload, status, error code); built when the test runs, not at import.
REFUSED: dict[str, tuple[Build, int, str]] = {
    "zero-bytes": (lambda: b"", 400, "empty_file"),
    "plain-text": (lambda: b"just some text, not an image", 415, "not_an_image"),
    "svg-with-entities": (lambda: SVG_ENTITIES, 415, "not_an_image"),
    "html": (lambda: b"<html><script>alert(1)</script></html>", 415, "not_an_image"),
    "pdf-header-then-jpeg": (lambda: b"%PDF-1.4\n" + leaf_jpeg(), 415, "not_an_image"),
    "jpeg-then-zip": (
        lambda: leaf_jpeg() + b"PK\x03\x04" + b"\0" * 26 + b"evil.php",
        422,
        "trailing_data",
    ),
    "jpeg-then-php": (
        lambda: leaf_jpeg() + b"<?php system($_GET['c']); ?>",
        422,
        "trailing_data",
    ),
    "png-then-html": (
        lambda: encode(Image.new("RGB", (8, 8)), "PNG") + b"<html><script>alert(1)</script>",
        422,
        "trailing_data",
    ),
    "webp-then-zip": (
        lambda: encode(Image.new("RGB", (8, 8)), "WEBP") + b"PK\x05\x06",
        422,
        "trailing_data",
    ),
    "png-declaring-100000x100000": (
        lambda: png(100_000, 100_000, zlib.compress(b"\0" * 64)),
        413,
        "too_many_pixels",
    ),
    "png-bomb-48-megapixels": (lambda: png_bomb(8000, 6000), 413, "too_many_pixels"),
    "jpeg-declaring-65535x65535": (lambda: jpeg_declaring(65535, 65535), 413, "too_many_pixels"),
    "jpeg-declaring-8000x6000": (lambda: jpeg_declaring(8000, 6000), 413, "too_many_pixels"),
    "webp-declaring-16384x16384": (lambda: webp_declaring(16384, 16384), 413, "too_many_pixels"),
    "gif-declaring-65535x65535": (lambda: gif_declaring(65535, 65535), 413, "too_many_pixels"),
    "tiff-declaring-100000x100000": (
        lambda: tiff_declaring(100_000, 100_000),
        413,
        "too_many_pixels",
    ),
    "gif": (lambda: encode(Image.new("P", (8, 8)), "GIF"), 415, "unsupported_format"),
    "progressive-jpeg-2000-scans": (lambda: scan_bomb(2000), 422, "too_many_scans"),
    "truncated-jpeg": (lambda: leaf_jpeg((400, 300))[:300], 422, "corrupt_image"),
    "truncated-png": (
        lambda: encode(Image.new("RGB", (400, 300)), "PNG")[:-40],
        422,
        "corrupt_image",
    ),
    "png-ztxt-bomb": (
        lambda: png_with_chunk(b"zTXt", b"k\0\0" + zlib.compress(b"a" * 20_000_000, 9)),
        422,
        "corrupt_image",
    ),
    "png-iccp-bomb": (
        lambda: png_with_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"a" * 20_000_000, 9)),
        422,
        "corrupt_image",
    ),
}

# Valid images with hostile parts the decoder must survive: broken metadata is no reason to refuse
# a photo, and the largest images allowed must decode within the memory bound.
ACCEPTED: dict[str, Build] = {
    "exif-ifd-loop": exif_loop,
    "exif-nested-3000-deep": lambda: exif_nested(3000),
    "exif-huge-counts": exif_huge_counts,
    "icc-profile-garbage": lambda: jpeg_with_segment(
        0xE2, b"ICC_PROFILE\0\x01\x01" + b"\xde\xad" * 3000
    ),
    "png-of-zeros-36-megapixels": lambda: png_bomb(6000, 6000),
    "png-16-bit-grey-36-megapixels": lambda: png_bomb(6000, 6000, depth=16),
    "png-16-bit-rgba-36-megapixels": lambda: png_bomb(6000, 6000, depth=16, colour=6),
}


def memory(pid: int, field: str) -> int:
    """A process's resident memory now (VmRSS) or at its peak (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc: not Linux?")


class Server:
    """The server under attack, warmed up by one prediction."""

    def __init__(self, url: str, pid: int) -> None:
        self.url = url
        self.pid = pid
        self.port = int(url.rsplit(":", 1)[1])
        assert upload(self, leaf_jpeg()).status_code == 200

    @contextmanager
    def peak_growth_below(self, limit: int) -> Iterator[None]:
        """Check that the server's peak memory in the block rises less than `limit` bytes."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # the peak starts again from now
        start = memory(self.pid, "VmRSS")
        yield
        growth = memory(self.pid, "VmHWM") - start
        assert growth < limit, f"peak memory grew {growth / 2**20:.0f} MiB"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server (SQLite) for the whole corpus."""
    workdir = tmp_path_factory.mktemp("hostile")
    environment = {
        "LEAFWATCH_LOG_FILE": "",
        "LEAFWATCH_DRIFT_INTERVAL_SECONDS": "0",
        "LEAFWATCH_PERFORMANCE_INTERVAL_SECONDS": "0",
        "LEAFWATCH_MODEL_POLL_SECONDS": "0",
    }
    with leafwatch_serve(workdir, env=environment) as (url, process):
        yield Server(url, process.pid)


def upload(
    server: Server, data: bytes, *, content_type: str = "image/jpeg", name: str = "leaf.jpg"
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/predict",
        files={"file": (name, data, content_type)},
        data={"user_id": "attacker"},
        timeout=60,
    )


def assert_error_shape(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]


@pytest.mark.parametrize(("build", "status", "code"), REFUSED.values(), ids=REFUSED.keys())
def test_a_hostile_upload_is_refused_in_bounded_time_and_memory(
    server: Server, build: Build, status: int, code: str
) -> None:
    data = build()
    started = time.monotonic()
    with server.peak_growth_below(PEAK_GROWTH_BYTES):
        response = upload(server, data)
    elapsed = time.monotonic() - started
    assert_error_shape(response, status, code)
    assert elapsed < SECONDS_PER_UPLOAD


@pytest.mark.parametrize("build", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_valid_image_with_hostile_parts_is_answered_in_bounded_time_and_memory(
    server: Server, build: Build
) -> None:
    data = build()
    started = time.monotonic()
    with server.peak_growth_below(PEAK_GROWTH_BYTES):
        response = upload(server, data)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert elapsed < SECONDS_PER_UPLOAD


def test_large_images_arriving_together_are_decoded_a_few_at_a_time(server: Server) -> None:
    data = png_bomb(6000, 6000, depth=16, colour=6)  # 36 megapixels, 290 MB to decode
    with server.peak_growth_below(CONCURRENT_PEAK_GROWTH_BYTES), ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: upload(server, data).status_code, range(6)))
    assert statuses == [200] * 6


def test_the_declared_content_type_of_the_file_is_not_trusted(server: Server) -> None:
    """The bytes decide: a JPEG labelled PNG or text is a JPEG, text labelled JPEG is text."""
    assert upload(server, leaf_jpeg(), content_type="image/png").status_code == 200
    assert upload(server, leaf_jpeg(), content_type="text/plain", name="a.txt").status_code == 200
    text = upload(server, b"#!/bin/sh\nrm -rf /\n", content_type="image/jpeg")
    assert_error_shape(text, 415, "not_an_image")


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("image/jpeg", leaf_jpeg(), 422, "invalid_request"),
        ("text/plain", b"user_id=attacker", 422, "invalid_request"),
        ("application/json", b'{"user_id": "attacker"}', 422, "invalid_request"),
        ("multipart/form-data", leaf_jpeg(), 400, "bad_request"),
        ("multipart/form-data; boundary=x", b"--x\r\nnot a part", 400, "bad_request"),
    ],
    ids=["raw-jpeg", "text", "json", "multipart-without-boundary", "broken-multipart"],
)
def test_a_request_that_is_not_an_upload_form_is_refused(
    server: Server, content_type: str, body: bytes, status: int, code: str
) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/predict", content=body, headers={"content-type": content_type}
    )
    assert_error_shape(response, status, code)


def test_more_files_or_fields_than_the_form_has_are_refused(server: Server) -> None:
    image = leaf_jpeg()
    two_files = httpx.post(
        f"{server.url}/api/v1/predict",
        files=[("file", ("a.jpg", image, "image/jpeg")), ("file", ("b.jpg", image, "image/jpeg"))],
        data={"user_id": "attacker"},
    )
    assert_error_shape(two_files, 400, "bad_request")
    many_fields = httpx.post(
        f"{server.url}/api/v1/predict",
        files={"file": ("a.jpg", image, "image/jpeg")},
        data={"user_id": "attacker", **{f"field{n}": "x" for n in range(20)}},
    )
    assert_error_shape(many_fields, 400, "bad_request")


def test_a_multi_gigabyte_declared_length_is_refused_before_the_body_arrives(
    server: Server,
) -> None:
    started = time.monotonic()
    with (
        server.peak_growth_below(PEAK_GROWTH_BYTES),
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection,
    ):
        connection.sendall(
            b"POST /api/v1/predict HTTP/1.1\r\nHost: leafwatch\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 5000000000\r\n\r\n--b\r\n"
        )
        answer = b""
        while chunk := connection.recv(65536):  # the server closes once it has answered
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head.lower()
    assert b'"error":"file_too_large"' in body
    assert time.monotonic() - started < SECONDS_PER_UPLOAD


def test_a_50_mb_streamed_body_is_cut_off_at_the_limit(server: Server) -> None:
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n"
        )
        for _ in range(800):  # 800 x 64 KiB = 50 MiB, chunked: no Content-Length to go by
            sent += 65536
            yield b"\xff" * 65536

    started = time.monotonic()
    with server.peak_growth_below(PEAK_GROWTH_BYTES):
        response = httpx.post(
            f"{server.url}/api/v1/predict",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=b"},
            timeout=60,
        )
    assert_error_shape(response, 413, "file_too_large")
    assert time.monotonic() - started < SECONDS_PER_UPLOAD
    # The answer came once the limit (10 MiB and a bit) was passed, not after the whole body.
    assert sent < 20 * 2**20
    assert httpx.get(f"{server.url}/health").status_code == 200
