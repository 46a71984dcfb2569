"""Decode uploaded images safely, and turn them into the model's input.

Serving and training both go through these two functions, so the model sees in production exactly
what it saw when it learned.
"""

import io
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from leafwatch.errors import InvalidImage

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
# Decoding works at reduced scale: the shorter side ends between WORK_SIZE and 2 * WORK_SIZE
# (never upscaled). The model looks at far fewer pixels, and drift features need no more.
WORK_SIZE = 256
_EXIF_ORIENTATION = 0x0112
_SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})
# What Pillow raises for damaged files, besides OSError: it varies by plugin.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError)


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
    if img.format not in ACCEPTED_FORMATS:
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
    orientation = _orientation(img)
    if orientation in _SWAPPED_ORIENTATIONS:
        width, height = height, width
    try:
        if img.format == "JPEG":
            # JPEG decodes at 1/2, 1/4 or 1/8 scale almost for free (DCT scaling).
            img.draft(None, (WORK_SIZE, WORK_SIZE))
        img.load()
        rgb = _reduce(_to_rgb(img))
    except _DECODE_ERRORS as exc:
        raise InvalidImage("corrupt_image", f"the image cannot be decoded: {exc}") from None
    if orientation not in (None, 1):
        rgb = _apply_orientation(rgb, orientation)
    return DecodedImage(
        image=rgb, width=width, height=height, format=str(img.format), size_bytes=len(data)
    )


def to_model_input(image: Image.Image, size: int) -> NDArray[np.float32]:
    """Resize an RGB image to size x size and return it as a 1x3xHxW float32 array in [0, 1]."""
    resized = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    array = np.asarray(resized, dtype=np.float32) * (1.0 / 255.0)
    return np.ascontiguousarray(array.transpose(2, 0, 1)[np.newaxis])


def _open(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow only warns between its own limit and twice that; treat the warning as the error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
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


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float grayscale: scale to 8 bits instead of letting convert() clip.
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


def _reduce(img: Image.Image) -> Image.Image:
    factor = min(img.size) // WORK_SIZE
    if factor >= 2:
        return img.reduce(factor)
    return img
