"""Decode uploaded images safely, and turn them into the model's input.

Serving and training both go through these two functions, so the model sees in production exactly
what it saw when it learned.
"""

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError
from PIL import _imaging as pillow_core  # Image.core, where Pillow's allocator is tuned

from leafwatch.errors import InvalidImage
from leafwatch.model.structure import check_structure

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
# A JPEG with more images after the first (an MPO: phone HDR gain maps, stereo cameras) is served
# as the JPEG it starts with.
_FORMAT_ALIASES = {"MPO": "JPEG"}
# Decoding works at reduced scale: the shorter side ends between WORK_SIZE and 2 * WORK_SIZE
# (never upscaled). The model looks at far fewer pixels, and drift features need no more.
WORK_SIZE = 256
_EXIF_ORIENTATION = 0x0112
_SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})
# What Pillow raises for damaged files, besides OSError: it varies by plugin. It warns about some
# damage too, which is an exception where warnings are errors (the tests).
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    RecursionError,
    Warning,
)
_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
# A PNG or WebP decodes whole, up to 4 bytes a pixel (160 MB at 40 megapixels): a few such decodes
# at a time per process keep memory bounded when many arrive at once. JPEGs decode at reduced
# scale, so almost none is this large.
LARGE_DECODE_PIXELS = 4_000_000
_LARGE_DECODES = threading.BoundedSemaphore(2)
# glibc serves allocations of 32 MiB and more from their own mappings, returned to the system when
# freed. Pillow's default 16 MiB blocks come from per-thread heaps that keep them instead, so each
# thread that once decoded a large image holds its memory: peak memory grows with the threads.
IMAGE_BLOCK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An upload decoded to RGB at working scale, with facts about the original file."""

    image: Image.Image
    width: int
    height: int
    format: str
    size_bytes: int


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> DecodedImage:
    """Decode JPEG, PNG or WebP bytes to an upright RGB image, or raise InvalidImage."""
    if not data:
        raise InvalidImage("empty_file", "the uploaded file is empty")
    if len(data) > max_bytes:
        raise InvalidImage(
            "file_too_large",
            f"the uploaded file has {len(data)} bytes; the limit is {max_bytes}",
        )
    img = _open(data)
    image_format = _FORMAT_ALIASES.get(str(img.format), str(img.format))
    if image_format not in ACCEPTED_FORMATS:
        raise InvalidImage(
            "unsupported_format",
            f"{img.format} images are not accepted; send JPEG, PNG or WebP",
        )
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InvalidImage("corrupt_image", f"the image declares a size of {width}x{height}")
    if width * height > max_pixels:
        raise InvalidImage(
            "too_many_pixels",
            f"the image has {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
        )
    check_structure(data, image_format)
    try:
        if image_format == "JPEG":
            # JPEG decodes at 1/2, 1/4 or 1/8 scale almost for free (DCT scaling).
            img.draft(None, (WORK_SIZE, WORK_SIZE))
        with _decode_slot(img.size):
            img.load()
            # After load: a PNG's EXIF may follow its pixels, so reading it decodes the image.
            orientation = _orientation(img)
            rgb = _working_rgb(img)
            if rgb is not img:
                img.close()  # the full-size pixels go now, before the next large decode starts
    except _DECODE_ERRORS as exc:
        raise InvalidImage("corrupt_image", f"the image cannot be decoded: {exc}") from None
    if orientation in _SWAPPED_ORIENTATIONS:
        width, height = height, width
    if orientation not in (None, 1):
        rgb = _apply_orientation(rgb, orientation)
    return DecodedImage(
        image=rgb, width=width, height=height, format=image_format, size_bytes=len(data)
    )


def configure_image_memory() -> None:
    """Have Pillow allocate large images in blocks that go back to the system when freed."""
    pillow_core.set_block_size(IMAGE_BLOCK_BYTES)


def to_model_input(image: Image.Image, size: int) -> NDArray[np.float32]:
    """Resize an RGB image to size x size and return it as a 1x3xHxW float32 array in [0, 1]."""
    resized = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    array = np.asarray(resized, dtype=np.float32) * (1.0 / 255.0)
    return np.ascontiguousarray(array.transpose(2, 0, 1)[np.newaxis])


def _open(data: bytes) -> Image.Image:
    # Pillow refuses twice its own pixel limit and warns below that; max_pixels (checked next)
    # decides. Its warning is not turned into an error here: warnings.catch_warnings changes
    # process-wide state, which decoding threads would race on.
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage(
            "not_an_image", "the uploaded file is not an image (send JPEG, PNG or WebP)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage("too_many_pixels", str(exc)) from None
    except _DECODE_ERRORS as exc:
        raise InvalidImage("corrupt_image", f"the image header is damaged: {exc}") from None


@contextmanager
def _decode_slot(size: tuple[int, int]) -> Iterator[None]:
    if size[0] * size[1] < LARGE_DECODE_PIXELS:
        yield
        return
    with _LARGE_DECODES:
        yield


def _orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION)
    except _DECODE_ERRORS:
        return None  # broken metadata is no reason to refuse the photo
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }[orientation]
    return img.transpose(method)


def _working_rgb(img: Image.Image) -> Image.Image:
    """Reduce to working scale first, then convert: the full-size image is not copied again."""
    factor = min(img.size) // WORK_SIZE
    if img.mode in _SIXTEEN_BIT:
        return _sixteen_bit_rgb(img, factor)
    if img.mode == "P":  # palette indices cannot be averaged
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("1", "PA"):
        img = img.convert("L" if img.mode == "1" else "RGBA")
    if factor >= 2:
        img = img.reduce(factor)
    return _to_rgb(img)


def _sixteen_bit_rgb(img: Image.Image, factor: int) -> Image.Image:
    # Pillow cannot reduce 16-bit images: block means in float32, on the reduced size only.
    array = np.asarray(img)
    top = 65535.0 if array.max(initial=0) > 255 else 255.0
    if factor >= 2:
        rows, columns = (array.shape[0] // factor, array.shape[1] // factor)
        blocks = array[: rows * factor, : columns * factor].reshape(rows, factor, columns, factor)
        reduced = blocks.mean(axis=(1, 3), dtype=np.float32)
    else:
        reduced = array.astype(np.float32)
    gray = np.clip(reduced * (255.0 / top), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "F"):
        # 32-bit and float grayscale: scale to 8 bits instead of letting convert() clip.
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" and array.max(initial=0) > 255 else 255.0
        if img.mode == "F":
            top = max(float(array.max(initial=0.0)), 1.0)
        gray = np.clip(array * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        # Phones and browsers put transparent areas on white; so do we.
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
