"""Procedural banana-leaf photos for the seven classes, with controllable photographic nuisance.

No public banana-leaf data set is reachable from here, so the model learns from these images. Each
image draws from two random streams seeded by (seed, class_id, index): one for the leaf and its
lesions, one for the photograph (light, blur, background, camera, JPEG, rotation). Changing the
nuisance therefore re-photographs the same leaf, which is what a drift experiment wants.

The leaf is laid out in millimetres: a midrib, a lamina on both sides with a wavy margin, fine
lateral veins slanting towards the tip, and lesions that follow the veins as Black Sigatoka's do
on the Fouré scale (`leafwatch.model.symptoms` samples them). This module photographs it: the
camera sees FIELD_OF_VIEW_MM on its shorter side.
"""

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from leafwatch.model.labels import CLASS_NAMES, NUM_CLASSES
from leafwatch.model.symptoms import POLYGON_VERTICES, RGB, Float, Leaf, Paint, sample_leaf

BACKGROUNDS: tuple[str, ...] = ("soil", "grass", "sky", "bench")
# A close-up: sub-millimetre specks must still cover a pixel or two at the working scale.
FIELD_OF_VIEW_MM = 64.0
# Larger photos are rendered at this shorter side and resized, so that cost stays flat.
RENDER_SHORT_SIDE = 256


@dataclass(frozen=True, slots=True)
class Nuisance:
    """Ranges of the photographic conditions; each image samples its own values from them.

    The defaults are the mild variety the model trains on. Drift is a changed copy, e.g.
    `dataclasses.replace(Nuisance(), brightness=(0.4, 0.6), background=("bench",))`.
    """

    brightness: tuple[float, float] = (0.85, 1.15)  # multiplicative exposure factor
    blur: tuple[float, float] = (0.0, 0.6)  # Gaussian sigma in output pixels
    background: tuple[str, ...] = ("soil", "grass")  # kinds to pick from, see BACKGROUNDS
    # Camera (width, height) choices: they set the aspect; the field of view stays the same.
    resolution: tuple[tuple[int, int], ...] = ((256, 256), (320, 240), (240, 320))
    jpeg_quality: tuple[int, int] = (75, 95)
    rotation: tuple[float, float] = (-25.0, 25.0)  # degrees, counter-clockwise

    def __post_init__(self) -> None:
        _check_range("brightness", self.brightness, low=0.0)
        _check_range("blur", self.blur, low=0.0)
        _check_range("jpeg_quality", self.jpeg_quality, low=1, high=100)
        _check_range("rotation", self.rotation)
        if not self.background or any(kind not in BACKGROUNDS for kind in self.background):
            raise ValueError(
                f"background must be a non-empty tuple of {BACKGROUNDS}, got {self.background!r}"
            )
        if not self.resolution or any(
            len(pair) != 2 or min(pair) < 16 or max(pair) > 8192 for pair in self.resolution
        ):
            raise ValueError(
                "resolution must be a non-empty tuple of (width, height) pairs between 16 and "
                f"8192 pixels, got {self.resolution!r}"
            )

    def as_dict(self) -> dict[str, object]:
        """Return the ranges as JSON-ready lists, for model cards and reports."""
        return {
            "brightness": list(self.brightness),
            "blur": list(self.blur),
            "background": list(self.background),
            "resolution": [list(pair) for pair in self.resolution],
            "jpeg_quality": list(self.jpeg_quality),
            "rotation": list(self.rotation),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Nuisance":
        """The ranges `as_dict` wrote (a model card's recipe)."""
        return cls(
            brightness=(float(data["brightness"][0]), float(data["brightness"][1])),
            blur=(float(data["blur"][0]), float(data["blur"][1])),
            background=tuple(str(name) for name in data["background"]),
            resolution=tuple((int(w), int(h)) for w, h in data["resolution"]),
            jpeg_quality=(int(data["jpeg_quality"][0]), int(data["jpeg_quality"][1])),
            rotation=(float(data["rotation"][0]), float(data["rotation"][1])),
        )


def _check_range(
    name: str, bounds: tuple[float, float], *, low: float | None = None, high: float | None = None
) -> None:
    if len(bounds) != 2 or bounds[0] > bounds[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {bounds!r}")
    if (low is not None and bounds[0] < low) or (high is not None and bounds[1] > high):
        raise ValueError(f"{name} must lie within [{low}, {high}], got {bounds!r}")


@dataclass(frozen=True, slots=True)
class _Shot:
    """One photograph's sampled conditions."""

    brightness: float
    blur: float
    background: str
    size: tuple[int, int]
    quality: int
    rotation: float  # radians
    light_slope: float  # relative fall-off of the light across the field of view
    light_direction: float  # radians


def render_leaf(
    class_id: int, *, seed: int, index: int, nuisance: Nuisance = Nuisance()
) -> Image.Image:
    """Render one RGB leaf photo of a class; the same arguments always give the same image."""
    return _render(class_id, seed=seed, index=index, nuisance=nuisance)[0]


def leaf_jpeg(class_id: int, *, seed: int, index: int, nuisance: Nuisance = Nuisance()) -> bytes:
    """Render one leaf photo and encode it as JPEG at the sampled quality."""
    image, shot = _render(class_id, seed=seed, index=index, nuisance=nuisance)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=shot.quality)
    return buffer.getvalue()


def class_counts(per_class: int, class_weights: Sequence[float] | None = None) -> list[int]:
    """Split per_class * NUM_CLASSES images over the classes in proportion to the weights."""
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    if class_weights is None:
        return [per_class] * NUM_CLASSES
    weights = np.asarray(class_weights, dtype=np.float64)
    if weights.shape != (NUM_CLASSES,) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(
            f"class_weights must be {NUM_CLASSES} non-negative numbers with a positive sum, "
            f"got {list(class_weights)!r}"
        )
    # Largest remainder: the counts add up to the total exactly and follow the weights.
    exact = weights / weights.sum() * per_class * NUM_CLASSES
    counts = np.floor(exact).astype(int)
    shortfall = per_class * NUM_CLASSES - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:shortfall]] += 1
    return [int(count) for count in counts]


def generate_dataset(
    out_dir: Path,
    *,
    per_class: int,
    seed: int,
    nuisance: Nuisance,
    class_weights: Sequence[float] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write leaf JPEGs to out_dir/<ClassName>/<index>.jpg and return their paths."""
    counts = class_counts(per_class, class_weights)
    paths: list[Path] = []
    with _progress(progress) as bar:
        task = bar.add_task("rendering leaves", total=sum(counts))
        for class_id, count in enumerate(counts):
            folder = out_dir / CLASS_NAMES[class_id]
            if count:
                folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                path = folder / f"{index}.jpg"
                path.write_bytes(leaf_jpeg(class_id, seed=seed, index=index, nuisance=nuisance))
                paths.append(path)
                bar.advance(task)
    return paths


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


# ---------------------------------------------------------------------------------------------
# Rendering: planar float32 (3, h, w) arrays, which numpy broadcasts far faster than (h, w, 3).


def _render(
    class_id: int, *, seed: int, index: int, nuisance: Nuisance
) -> tuple[Image.Image, _Shot]:
    if not 0 <= class_id < NUM_CLASSES:
        raise ValueError(f"class_id must be in [0, {NUM_CLASSES - 1}], got {class_id}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    leaf_seq, shot_seq = np.random.SeedSequence([seed, class_id, index]).spawn(2)
    leaf = sample_leaf(np.random.default_rng(leaf_seq), class_id)
    shot_rng = np.random.default_rng(shot_seq)
    shot = _sample_shot(shot_rng, nuisance)

    out_w, out_h = shot.size
    factor = min(1.0, RENDER_SHORT_SIDE / min(out_w, out_h))
    size = (max(8, round(out_w * factor)), max(8, round(out_h * factor)))
    planes = _compose(leaf, shot, shot_rng, size)
    # Blur is specified in output pixels; rendering smaller shrinks the kernel alike.
    planes = _gaussian_blur(planes, shot.blur * factor)
    channels = np.clip(planes * 255.0 + 0.5, 0, 255).astype(np.uint8)
    image = Image.merge("RGB", [Image.fromarray(channel) for channel in channels])
    if size != shot.size:
        image = image.resize(shot.size, Image.Resampling.BICUBIC)
    return image, shot


def _sample_shot(rng: np.random.Generator, nuisance: Nuisance) -> _Shot:
    return _Shot(
        brightness=float(rng.uniform(*nuisance.brightness)),
        blur=float(rng.uniform(*nuisance.blur)),
        background=nuisance.background[int(rng.integers(len(nuisance.background)))],
        size=nuisance.resolution[int(rng.integers(len(nuisance.resolution)))],
        quality=int(rng.integers(nuisance.jpeg_quality[0], nuisance.jpeg_quality[1] + 1)),
        rotation=math.radians(float(rng.uniform(*nuisance.rotation))),
        light_slope=float(rng.uniform(0.0, 0.25)),
        light_direction=float(rng.uniform(0.0, 2 * math.pi)),
    )


def _compose(leaf: Leaf, shot: _Shot, rng: np.random.Generator, size: tuple[int, int]) -> Float:
    w, h = size
    ppm = min(w, h) / (FIELD_OF_VIEW_MM * leaf.zoom)  # pixels per millimetre
    cos_r, sin_r = math.cos(shot.rotation), math.sin(shot.rotation)
    xs = ((np.arange(w, dtype=np.float32) - (w - 1) / 2) / ppm)[np.newaxis, :]
    ys = ((np.arange(h, dtype=np.float32) - (h - 1) / 2) / ppm)[:, np.newaxis]
    u = cos_r * xs + sin_r * ys
    v = -sin_r * xs + cos_r * ys - leaf.midrib_offset
    v -= leaf.curvature * u * u
    side = np.abs(v)

    # Lamina: inside both margins, with a one-pixel soft edge.
    inside = np.minimum(v + leaf.half_widths[0], leaf.half_widths[1] - v)
    for amplitude, wavelength, phase in leaf.margin_waves:
        inside += amplitude * np.sin(u * (2 * math.pi / wavelength) + phase)
    alpha = np.clip(inside * ppm + 0.5, 0.0, 1.0)

    # Veins slant from the midrib towards the tip; pleats between them catch the light.
    along = u - side * (1.0 / math.tan(leaf.vein_angle))
    veins = np.cos(along * (2 * math.pi / leaf.vein_period) + leaf.vein_phase)
    light = 1.0 + leaf.vein_strength * np.clip(veins * 2.0 - 1.0, 0.0, 1.0)
    albedo = _column(leaf.colour) * light

    half_rib = leaf.midrib_width / 2
    rib = np.clip((half_rib - side) * ppm + 0.5, 0.0, 1.0)
    rib_tone = 1.1 - 0.25 * np.minimum(side * (1.0 / half_rib), 1.0) ** 2
    albedo += rib * (_column(leaf.midrib_colour) * rib_tone - albedo)

    geometry = (w, h, ppm, cos_r, sin_r)
    for paint in leaf.paints:
        mask = _paint_mask(paint, leaf, geometry)
        if mask is not None:
            albedo += mask * (_column(paint.colour) - albedo)

    surface = _upsample(leaf.shading, size)
    surface += leaf.pleat_depth * np.cos(
        along * (2 * math.pi / leaf.pleat_period) + leaf.pleat_phase
    )
    surface += 1.0
    albedo *= surface

    planes = _background(shot.background, rng, size)
    planes += alpha * (albedo - planes)

    # Light falls off across the frame; the exposure factor is the brightness nuisance.
    slope = shot.light_slope / FIELD_OF_VIEW_MM
    direction = shot.light_direction
    illumination = shot.brightness * (
        1.0 + slope * (math.cos(direction) * xs + math.sin(direction) * ys)
    )
    planes *= illumination
    planes += (rng.random((h, w), dtype=np.float32) - 0.5) * 0.04  # sensor noise
    return planes


def _f32(array: NDArray[np.floating[Any]]) -> Float:
    return array.astype(np.float32, copy=False)


def _column(colour: RGB) -> Float:
    return np.asarray(colour, dtype=np.float32).reshape(3, 1, 1)


def _paint_mask(
    paint: Paint, leaf: Leaf, geometry: tuple[int, int, float, float, float]
) -> Float | None:
    """Rasterise a paint's outlines at the camera's pose; None when none is in view."""
    w, h, ppm, cos_r, sin_r = geometry
    marks = paint.marks
    # Drawn at twice the size and reduced: cheap anti-aliasing for marks a few pixels wide.
    ss = 2.0 * ppm
    v_scene = marks.v + leaf.midrib_offset + leaf.curvature * marks.u**2
    cx = w - 0.5 + ss * (cos_r * marks.u - sin_r * v_scene)
    cy = h - 0.5 + ss * (sin_r * marks.u + cos_r * v_scene)
    major = marks.length * (paint.scale * ss / 2)
    minor = marks.width * (paint.scale * ss / 2)
    reach = major * 1.4 + 2
    visible = (cx > -reach) & (cx < 2 * w + reach) & (cy > -reach) & (cy < 2 * h + reach)
    sel = np.flatnonzero(visible)
    if len(sel) == 0:
        return None
    # A mark lies along the veins of its own side of the midrib, turned with the camera.
    angle = (
        np.where(marks.v[sel] >= 0, leaf.vein_angle, -leaf.vein_angle)
        + marks.tilt[sel]
        + math.atan2(sin_r, cos_r)
    )
    t = np.linspace(0.0, 2 * math.pi, POLYGON_VERTICES, endpoint=False, dtype=np.float32)
    a = major[sel, np.newaxis] * marks.wobble[sel] * np.cos(t)
    b = minor[sel, np.newaxis] * marks.wobble[sel] * np.sin(t)
    ca, sa = np.cos(angle)[:, np.newaxis], np.sin(angle)[:, np.newaxis]
    px = cx[sel, np.newaxis] + a * ca - b * sa
    py = cy[sel, np.newaxis] + a * sa + b * ca
    outlines = np.stack([px, py], axis=-1).reshape(len(sel), -1)

    canvas = Image.new("L", (2 * w, 2 * h), 0)
    draw = ImageDraw.Draw(canvas)
    for outline, x, y, size in zip(outlines, cx[sel], cy[sel], minor[sel], strict=True):
        if size < 1.0:
            # Too thin for a polygon to fill reliably: a dot.
            draw.ellipse((x - 1.0, y - 1.0, x + 1.0, y + 1.0), fill=255)
        else:
            draw.polygon(outline.tolist(), fill=255)
    canvas = canvas.reduce(2)
    radius = paint.soften_mm * ppm
    if radius > 0.7:
        canvas = canvas.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(canvas, dtype=np.float32) * (paint.opacity / 255.0)


def _gaussian_blur(planes: Float, sigma: float) -> Float:
    """Separable Gaussian blur of (3, h, w) planes with edge padding."""
    if sigma < 0.15:
        return planes
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    _, h, w = planes.shape
    padded = np.pad(planes, ((0, 0), (0, 0), (radius, radius)), mode="edge")
    rows = sum(tap * padded[:, :, k : k + w] for k, tap in enumerate(taps))
    padded = np.pad(rows, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    return np.asarray(sum(tap * padded[:, k : k + h] for k, tap in enumerate(taps)), np.float32)


def _upsample(grid: Float, size: tuple[int, int]) -> Float:
    """A smooth field over the image from a coarse grid of values."""
    resized = Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC)
    return np.array(resized, dtype=np.float32)


def _noise(rng: np.random.Generator, cells: tuple[int, int], size: tuple[int, int]) -> Float:
    """Smooth Gaussian noise with cells = (columns, rows) of independent values."""
    return _upsample(rng.standard_normal((cells[1], cells[0]), dtype=np.float32), size)


def _background(kind: str, rng: np.random.Generator, size: tuple[int, int]) -> Float:
    w, h = size
    shade = rng.uniform(0.75, 1.2)
    if kind == "soil":
        tone = 1.0 + 0.15 * _noise(rng, (5, 5), size) + 0.12 * _noise(rng, (w // 3, h // 3), size)
        tone[rng.random((h, w), dtype=np.float32) < 0.01] *= 0.6  # grit
        return _f32(_column((0.42, 0.31, 0.21)) * (shade * tone))
    if kind == "grass":
        blades = _noise(rng, (w // 2, 6), size)  # long along y: blades standing up
        tone = 1.0 + 0.25 * blades + 0.1 * _noise(rng, (4, 4), size)
        planes = _f32(_column((0.30, 0.46, 0.17)) * (shade * tone))
        planes[0] += 0.06 * np.clip(blades, 0.0, None)  # dry tips are yellower
        return planes
    if kind == "sky":
        ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, np.newaxis]
        top, bottom = _column((0.45, 0.64, 0.90)), _column((0.78, 0.86, 0.95))
        planes = top + (bottom - top) * ramp + np.zeros((1, 1, w), np.float32)
        clouds = np.clip(_noise(rng, (4, 3), size) * 0.6, 0.0, 1.0)
        return _f32(planes + clouds * (0.96 - planes))
    # bench: wooden planks with grain along them and dark gaps between
    grain = _noise(rng, (3, h // 2), size)
    plank = max(12, h // int(rng.integers(3, 6)))
    rows = np.arange(h)[:, np.newaxis]
    gaps = (rows + int(rng.integers(plank))) % plank < max(1, plank // 20)
    tone = (1.0 + 0.12 * grain) * np.where(gaps, 0.4, 1.0)
    return _column((0.62, 0.47, 0.31)) * (shade * tone).astype(np.float32)
