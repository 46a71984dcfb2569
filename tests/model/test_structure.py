"""An image file's structure: what follows the image, and how many scans a JPEG has."""

import io
import struct

import pytest
from PIL import Image

from leafwatch.errors import InvalidImage
from leafwatch.model.preprocess import decode_image
from leafwatch.model.structure import MAX_JPEG_SCANS, check_structure, jpeg_end, png_end, webp_end

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


LEAF = Image.new("RGB", (64, 48), (40, 130, 50))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_an_image_ends_where_its_file_ends(fmt: str) -> None:
    data = encode(LEAF, fmt)
    end = {"JPEG": jpeg_end, "PNG": png_end, "WEBP": webp_end}[fmt](data)
    assert end == len(data)
    check_structure(data, fmt)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_bytes_after_the_image_are_refused_but_zero_padding_is_not(fmt: str) -> None:
    data = encode(LEAF, fmt)
    check_structure(data + b"\0" * 16, fmt)
    with pytest.raises(InvalidImage) as caught:
        check_structure(data + b"<?php echo 1; ?>", fmt)
    assert caught.value.code == "trailing_data"
    assert "16 bytes after the end" in caught.value.detail


def test_a_jpeg_thumbnail_in_exif_does_not_end_the_image_early() -> None:
    exif = Image.Exif()
    exif[0x0112] = 1
    thumbnail = encode(Image.new("RGB", (16, 16)), "JPEG")
    app1 = b"Exif\0\0" + exif.tobytes() + thumbnail  # an EOI marker inside a segment
    data = encode(LEAF, "JPEG")
    data = data[:2] + struct.pack(">BBH", 0xFF, 0xE1, len(app1) + 2) + app1 + data[2:]
    assert jpeg_end(data) == len(data)


def test_a_multi_picture_jpeg_is_accepted_with_the_images_its_index_declares() -> None:
    data = encode(LEAF, "MPO", save_all=True, append_images=[Image.new("RGB", (32, 24))])
    assert jpeg_end(data) == len(data)
    decoded = decode_image(data, **LIMITS)
    assert (decoded.format, decoded.width, decoded.height) == ("JPEG", 64, 48)
    with pytest.raises(InvalidImage) as caught:
        decode_image(data + b"PK\x03\x04", **LIMITS)
    assert caught.value.code == "trailing_data"


def progressive_with(scans: int) -> bytes:
    """A small progressive JPEG with its last scan repeated until it has `scans` scans."""
    data = encode(LEAF, "JPEG", progressive=True)
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    last = data[starts[-1] : -2]
    return data[:-2] + last * (scans - len(starts)) + b"\xff\xd9"


def test_a_jpeg_may_have_up_to_the_limit_of_scans_and_no_more() -> None:
    check_structure(progressive_with(MAX_JPEG_SCANS), "JPEG")
    with pytest.raises(InvalidImage) as caught:
        check_structure(progressive_with(MAX_JPEG_SCANS + 1), "JPEG")
    assert caught.value.code == "too_many_scans"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_damaged_file_is_left_to_the_decoder(fmt: str) -> None:
    truncated = encode(LEAF, fmt)[:40]
    check_structure(truncated, fmt)  # no verdict here: decoding says what is wrong
    with pytest.raises(InvalidImage) as caught:
        decode_image(truncated, **LIMITS)
    assert caught.value.code in {"corrupt_image", "not_an_image"}
