"""Decoding uploads: every image a phone or browser makes is accepted, everything else refused."""

import io

import numpy as np
import pytest
from PIL import Image

from leafwatch.errors import InvalidImage
from leafwatch.model.preprocess import WORK_SIZE, decode_image, to_model_input
from tests.conftest import png_with_declared_size

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt", "colour"),
    [
        ("RGB", "JPEG", (40, 150, 60)),
        ("RGB", "PNG", (40, 150, 60)),
        ("RGB", "WEBP", (40, 150, 60)),
        ("RGBA", "PNG", (40, 150, 60, 255)),
        ("RGBA", "WEBP", (40, 150, 60, 255)),
        ("L", "JPEG", 120),
        ("L", "PNG", 120),
        ("LA", "PNG", (120, 255)),
        ("CMYK", "JPEG", (80, 0, 90, 40)),
        ("P", "PNG", 3),
        ("1", "PNG", 1),
    ],
)
def test_every_common_mode_decodes_to_rgb(mode: str, fmt: str, colour: object) -> None:
    decoded = decode_image(encode(Image.new(mode, (300, 200), colour), fmt), **LIMITS)  # type: ignore[arg-type]
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == (300, 200)
    assert decoded.format == fmt


def test_transparent_pixels_become_white() -> None:
    decoded = decode_image(encode(Image.new("RGBA", (50, 50), (0, 0, 0, 0)), "PNG"), **LIMITS)
    assert np.asarray(decoded.image).min() == 255


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    array = np.full((64, 64), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    data = encode(Image.fromarray(array), "PNG")
    pixels = np.asarray(decode_image(data, **LIMITS).image)
    assert 120 <= pixels.mean() <= 135


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (400, 200), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 200, 200))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    decoded = decode_image(encode(image, "JPEG", exif=exif), **LIMITS)
    assert (decoded.width, decoded.height) == (200, 400)
    pixels = np.asarray(decoded.image).mean(axis=2)
    assert decoded.image.size == (200, 400)
    top, bottom = pixels[:200].mean(), pixels[200:].mean()
    assert top > 200 > 50 > bottom  # the white left half is now on top


def test_broken_exif_does_not_refuse_the_photo() -> None:
    data = encode(Image.new("RGB", (64, 64), (0, 120, 0)), "JPEG", exif=b"Exif\x00\x00garbage")
    assert decode_image(data, **LIMITS).image.size == (64, 64)


def test_a_tiny_image_is_accepted() -> None:
    decoded = decode_image(encode(Image.new("RGB", (1, 1), (0, 255, 0)), "PNG"), **LIMITS)
    assert to_model_input(decoded.image, 128).shape == (1, 3, 128, 128)


def test_a_12_megapixel_jpeg_decodes_at_reduced_scale() -> None:
    data = encode(Image.new("RGB", (4000, 3000), (50, 140, 40)), "JPEG", quality=90)
    decoded = decode_image(data, **LIMITS)
    assert (decoded.width, decoded.height) == (4000, 3000)
    assert WORK_SIZE <= min(decoded.image.size) < 2 * WORK_SIZE


def test_a_large_png_is_reduced_to_working_scale() -> None:
    decoded = decode_image(encode(Image.new("RGB", (2000, 1500), (50, 140, 40)), "PNG"), **LIMITS)
    assert WORK_SIZE <= min(decoded.image.size) < 2 * WORK_SIZE


def test_model_input_is_nchw_float_in_unit_range() -> None:
    batch = to_model_input(Image.new("RGB", (300, 200), (255, 0, 128)), 96)
    assert batch.shape == (1, 3, 96, 96)
    assert batch.dtype == np.float32
    assert batch[0, 0].min() == pytest.approx(1.0)
    assert batch[0, 1].max() == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"this is not an image at all", "not_an_image"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not_an_image"),
        (encode(Image.new("RGB", (20, 20)), "GIF"), "unsupported_format"),
        (encode(Image.new("RGB", (20, 20)), "BMP"), "unsupported_format"),
        (encode(Image.new("RGB", (20, 20)), "TIFF"), "unsupported_format"),
        (encode(Image.new("RGB", (400, 400), (9, 99, 9)), "JPEG")[:300], "corrupt_image"),
        (encode(Image.new("RGB", (400, 400), (9, 99, 9)), "PNG")[:-40], "corrupt_image"),
        (png_with_declared_size(8000, 6000), "too_many_pixels"),
        (png_with_declared_size(60000, 60000), "too_many_pixels"),
        (png_with_declared_size(0, 10), "not_an_image"),
    ],
    ids=[
        "empty",
        "text",
        "pdf",
        "gif",
        "bmp",
        "tiff",
        "truncated-jpeg",
        "truncated-png",
        "48-megapixels",
        "bomb",
        "zero-width",
    ],
)
def test_bad_uploads_are_refused_with_a_code(data: bytes, code: str) -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(data, **LIMITS)
    assert caught.value.code == code
    assert 400 <= caught.value.status_code < 500


def test_a_file_over_the_byte_limit_is_refused() -> None:
    data = encode(Image.new("RGB", (64, 64)), "PNG")
    with pytest.raises(InvalidImage) as caught:
        decode_image(data, max_bytes=len(data) - 1, max_pixels=LIMITS["max_pixels"])
    assert caught.value.code == "file_too_large"
    assert caught.value.status_code == 413
