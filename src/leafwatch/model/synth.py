"""Procedural banana-leaf photos for the seven classes, with controllable photographic nuisance.

No public banana-leaf data set is reachable from here, so the model learns from these images. Each
image draws from two random streams seeded by (seed, class_id, index): one for the leaf and its
lesions, one for the photograph (light, blur, background, camera, JPEG, rotation). Changing the
nuisance therefore re-photographs the same leaf, which is what a drift experiment wants.

The leaf is laid out in millimetres: a midrib, a lamina on both sides with a wavy margin, fine
lateral veins slanting towards the tip, and lesions that follow the veins as Black Sigatoka's do
on the Fouré scale. The camera sees FIELD_OF_VIEW_MM on its shorter side.
"""

import dataclasses
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from PIL import Image, ImageDraw, ImageFilter
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from leafwatch.model.labels import CLASS_NAMES, NUM_CLASSES

BACKGROUNDS: tuple[str, ...] = ("soil", "grass", "sky", "bench")
# A close-up: sub-millimetre specks must still cover a pixel or two at the working scale.
FIELD_OF_VIEW_MM = 64.0
# Larger photos are rendered at this shorter side and resized, so that cost stays flat.
RENDER_SHORT_SIDE = 256
# Lesions are scattered over a square of this half-size around the view centre, so the leaf's
# content does not depend on the camera's aspect or rotation.
_SCENE_HALF_MM = 90.0
_POLYGON_VERTICES = 14
# Within this radius of the centre every camera sees the scene, whatever its aspect, rotation or
# zoom (half the shorter side at the closest zoom, less a margin).
_ALWAYS_SEEN_MM = 24.0

Float = NDArray[np.float32]
RGB = tuple[float, float, float]


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


@dataclass(frozen=True, slots=True)
class _Marks:
    """Elliptical marks on the leaf, in millimetres along (u, v): the midrib and across it."""

    u: Float
    v: Float
    length: Float  # full major axis, along the veins
    width: Float  # full minor axis
    tilt: Float  # radians off the vein direction
    wobble: Float  # (n, vertices) radius factors, for ragged outlines


@dataclass(frozen=True, slots=True)
class _Paint:
    """A colour laid on the lamina through the outlines of some marks, scaled."""

    marks: _Marks
    colour: RGB
    scale: float = 1.0
    opacity: float = 1.0
    soften_mm: float = 0.12


@dataclass(frozen=True, slots=True)
class _Leaf:
    """Everything about one leaf that does not depend on the camera."""

    colour: RGB
    midrib_colour: RGB
    vein_angle: float  # radians between a lateral vein and the midrib
    vein_period: float
    vein_phase: float
    vein_strength: float
    pleat_period: float
    pleat_phase: float
    pleat_depth: float
    midrib_offset: float
    midrib_width: float
    curvature: float  # 1/mm; the midrib bends a little
    half_widths: tuple[float, float]  # lamina on the negative and positive side of the midrib
    margin_waves: tuple[tuple[float, float, float], ...]  # (amplitude, wavelength, phase)
    zoom: float  # field of view factor: camera distance varies a little
    shading: Float  # coarse grid of surface shading
    paints: tuple[_Paint, ...] = field(default=())


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
    leaf = _sample_leaf(np.random.default_rng(leaf_seq), class_id)
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


def _compose(leaf: _Leaf, shot: _Shot, rng: np.random.Generator, size: tuple[int, int]) -> Float:
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
    paint: _Paint, leaf: _Leaf, geometry: tuple[int, int, float, float, float]
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
    t = np.linspace(0.0, 2 * math.pi, _POLYGON_VERTICES, endpoint=False, dtype=np.float32)
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


# ---------------------------------------------------------------------------------------------
# The leaf and its symptoms


def _sample_leaf(rng: np.random.Generator, class_id: int) -> _Leaf:
    greens = np.array([[0.16, 0.35, 0.10], [0.25, 0.47, 0.14], [0.37, 0.55, 0.17]], np.float32)
    t = rng.uniform(0.0, 2.0)
    low = int(min(t, 1.0))
    colour = greens[low] + (t - low) * (greens[low + 1] - greens[low])
    colour = colour + rng.normal(0.0, 0.015, 3).astype(np.float32)
    midrib = np.array([0.56, 0.64, 0.32], np.float32) + rng.normal(0.0, 0.03, 3).astype(np.float32)
    leaf = _Leaf(
        colour=_rgb(colour),
        midrib_colour=_rgb(midrib),
        vein_angle=math.radians(rng.uniform(55.0, 80.0)),
        vein_period=rng.uniform(0.9, 1.6),
        vein_phase=rng.uniform(0.0, 2 * math.pi),
        vein_strength=rng.uniform(0.06, 0.16),
        pleat_period=rng.uniform(4.0, 10.0),
        pleat_phase=rng.uniform(0.0, 2 * math.pi),
        pleat_depth=rng.uniform(0.02, 0.07),
        midrib_offset=rng.uniform(-24.0, 24.0),
        midrib_width=rng.uniform(3.0, 8.0),
        curvature=rng.uniform(-0.002, 0.002),
        half_widths=(rng.uniform(18.0, 50.0), rng.uniform(18.0, 50.0)),
        margin_waves=tuple(
            (rng.uniform(0.2, 1.0) * scale, rng.uniform(0.5, 1.0) * scale * 10, rng.uniform(0, 7))
            for scale in (3.0, 1.5, 0.8)
        ),
        zoom=rng.uniform(0.88, 1.14),
        shading=(rng.standard_normal((5, 5), dtype=np.float32) * np.float32(0.07)),
    )
    paints = _SYMPTOMS[class_id](rng, leaf)
    return dataclasses.replace(leaf, paints=paints)


def _rgb(values: ArrayLike) -> RGB:
    r, g, b = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0).tolist()
    return (r, g, b)


def _jitter(rng: np.random.Generator, colour: RGB, spread: float = 0.03) -> RGB:
    return _rgb(np.asarray(colour) * rng.uniform(0.9, 1.1) + rng.normal(0.0, spread, 3))


def _scatter(
    rng: np.random.Generator,
    leaf: _Leaf,
    *,
    density: tuple[float, float],
    length: tuple[float, float],
    aspect: tuple[float, float],
    tilt: float = 0.06,
    wobble: float = 0.08,
    in_view: int = 0,
) -> _Marks:
    """Marks spread over the lamina: density per 1000 mm^2, length in mm, width / length.

    At least `in_view` of them land where every camera sees the leaf, so that no photo of a
    diseased leaf happens to show only healthy lamina.
    """
    low, high = leaf.half_widths
    area = 2 * _SCENE_HALF_MM * (low + high)
    count = round(float(rng.uniform(*density)) * area / 1000.0)
    u = rng.uniform(-_SCENE_HALF_MM, _SCENE_HALF_MM, count)
    v = rng.uniform(-low, high, count)
    for _ in range(20):
        missing = in_view - int(np.count_nonzero(_always_seen(leaf, u, v)))
        if missing <= 0:
            break
        # Draw candidates over the always-seen disc and keep those on the lamina.
        radius = _ALWAYS_SEEN_MM * np.sqrt(rng.random(8 * missing))
        turn = rng.uniform(0.0, 2 * math.pi, 8 * missing)
        cu = radius * np.cos(turn)
        cv = radius * np.sin(turn) - leaf.midrib_offset - leaf.curvature * cu**2
        keep = np.flatnonzero((cv > -low) & (cv < high))[:missing]
        u, v = np.concatenate([u, cu[keep]]), np.concatenate([v, cv[keep]])
    # Keep lesions off the midrib: push them just outside it on their own side.
    clear = leaf.midrib_width / 2 + 0.3
    v = np.where(np.abs(v) < clear, np.sign(v + 1e-9) * (clear + np.abs(v)), v)
    return _marks(rng, u, v, length=length, aspect=aspect, tilt=tilt, wobble=wobble)


def _always_seen(leaf: _Leaf, u: NDArray[np.float64], v: NDArray[np.float64]) -> NDArray[np.bool_]:
    v_scene = v + leaf.midrib_offset + leaf.curvature * u**2
    inside: NDArray[np.bool_] = u**2 + v_scene**2 < _ALWAYS_SEEN_MM**2
    return inside


def _marks(
    rng: np.random.Generator,
    u: NDArray[np.float64],
    v: NDArray[np.float64],
    *,
    length: tuple[float, float],
    aspect: tuple[float, float],
    tilt: float,
    wobble: float,
) -> _Marks:
    count = len(u)
    lengths = rng.uniform(*length, count)
    return _Marks(
        u=u.astype(np.float32),
        v=v.astype(np.float32),
        length=lengths.astype(np.float32),
        width=(lengths * rng.uniform(*aspect, count)).astype(np.float32),
        tilt=rng.normal(0.0, tilt, count).astype(np.float32),
        wobble=np.clip(1.0 + rng.normal(0.0, wobble, (count, _POLYGON_VERTICES)), 0.6, 1.4).astype(
            np.float32
        ),
    )


def _healthy(rng: np.random.Generator, leaf: _Leaf) -> tuple[_Paint, ...]:
    # Healthy leaves are not spotless: a few pale flecks of dust or dried water.
    flecks = _scatter(rng, leaf, density=(0.0, 4.0), length=(0.3, 0.8), aspect=(0.6, 1.0))
    colour = _jitter(rng, (0.62, 0.70, 0.52), 0.02)
    return (_Paint(flecks, colour, opacity=rng.uniform(0.4, 0.7), soften_mm=0.08),)


def _specks(
    rng: np.random.Generator, leaf: _Leaf, density: tuple[float, float], in_view: int = 0
) -> _Paint:
    """Stage 1's sign: sub-millimetre yellowish to rusty specks."""
    marks = _scatter(
        rng, leaf, density=density, length=(0.3, 0.9), aspect=(0.6, 1.0), in_view=in_view
    )
    tint = rng.uniform(0.0, 1.0)
    colour = _rgb(np.array([0.58, 0.48, 0.18]) * (1 - tint) + np.array([0.50, 0.30, 0.14]) * tint)
    return _Paint(marks, _jitter(rng, colour), opacity=rng.uniform(0.75, 0.95), soften_mm=0.08)


def _discolour(rng: np.random.Generator, leaf: _Leaf, opacity: tuple[float, float]) -> _Paint:
    """Faint, diffuse yellowing of the lamina."""
    marks = _scatter(rng, leaf, density=(0.3, 0.8), length=(8.0, 20.0), aspect=(0.5, 0.9))
    colour = _jitter(rng, (0.52, 0.56, 0.16), 0.02)
    return _Paint(marks, colour, opacity=rng.uniform(*opacity), soften_mm=2.5)


def _light_streaks(
    rng: np.random.Generator, leaf: _Leaf, density: tuple[float, float], in_view: int = 0
) -> _Paint:
    """Stage 2's sign: light-brown streaks of 2-3 mm along the veins."""
    marks = _scatter(
        rng,
        leaf,
        density=density,
        length=(2.0, 3.5),
        aspect=(0.12, 0.22),
        tilt=0.04,
        in_view=in_view,
    )
    colour = _jitter(rng, (0.60, 0.42, 0.22))
    return _Paint(marks, colour, opacity=rng.uniform(0.85, 1.0), soften_mm=0.1)


def _dark_streaks(
    rng: np.random.Generator, leaf: _Leaf, density: tuple[float, float], in_view: int = 0
) -> _Paint:
    """Stage 3's sign: longer dark-brown streaks."""
    marks = _scatter(
        rng,
        leaf,
        density=density,
        length=(5.0, 14.0),
        aspect=(0.06, 0.12),
        tilt=0.03,
        wobble=0.1,
        in_view=in_view,
    )
    colour = _jitter(rng, (0.32, 0.19, 0.10), 0.02)
    return _Paint(marks, colour, opacity=rng.uniform(0.9, 1.0), soften_mm=0.12)


def _spots(
    rng: np.random.Generator, leaf: _Leaf, density: tuple[float, float], in_view: int = 0
) -> _Marks:
    """Oval spots of Stage 4 onwards, along the veins."""
    return _scatter(
        rng, leaf, density=density, length=(3.5, 7.5), aspect=(0.45, 0.7), tilt=0.1, in_view=in_view
    )


def _stage1(rng: np.random.Generator, leaf: _Leaf) -> tuple[_Paint, ...]:
    return (_discolour(rng, leaf, (0.15, 0.32)), _specks(rng, leaf, (20.0, 80.0), in_view=25))


def _stage2(rng: np.random.Generator, leaf: _Leaf) -> tuple[_Paint, ...]:
    return (
        _discolour(rng, leaf, (0.1, 0.25)),
        _specks(rng, leaf, (0.0, 12.0)),
        _light_streaks(rng, leaf, (6.0, 22.0), in_view=8),
    )


def _stage3(rng: np.random.Generator, leaf: _Leaf) -> tuple[_Paint, ...]:
    # Earlier symptoms linger as the disease moves on: here and in later stages.
    return (
        _specks(rng, leaf, (0.0, 8.0)),
        _light_streaks(rng, leaf, (0.0, 5.0)),
        _dark_streaks(rng, leaf, (2.5, 9.0), in_view=4),
    )


def _stage4(rng: np.random.Generator, leaf: _Leaf) -> tuple[_Paint, ...]:
    spots = _spots(rng, leaf, (1.2, 4.5), in_view=3)
    rim = _jitter(rng, (0.30, 0.18, 0.10), 0.02)
    core = _jitter(rng, (0.14, 0.10, 0.07), 0.015)
    return (
        _light_streaks(rng, leaf, (0.0, 3.0)),
        _dark_streaks(rng, leaf, (0.0, 1.5)),
        _Paint(spots, rim, scale=1.12, soften_mm=0.15),
        _Paint(spots, core, soften_mm=0.12),
    )


def _stage5(rng: np.random.Generator, leaf: _Leaf) -> tuple[_Paint, ...]:
    spots = _spots(rng, leaf, (1.2, 4.5), in_view=3)
    halo = _jitter(rng, (0.78, 0.74, 0.22), 0.03)
    return (
        _dark_streaks(rng, leaf, (0.0, 1.5)),
        _Paint(
            spots, halo, scale=rng.uniform(1.5, 1.9), opacity=rng.uniform(0.6, 0.85), soften_mm=0.6
        ),
        _Paint(spots, _jitter(rng, (0.07, 0.06, 0.05), 0.01), soften_mm=0.12),
        _Paint(
            spots,
            _jitter(rng, (0.42, 0.40, 0.37), 0.02),
            scale=rng.uniform(0.35, 0.5),
            opacity=0.85,
            soften_mm=0.2,
        ),
    )


def _stage6(rng: np.random.Generator, leaf: _Leaf) -> tuple[_Paint, ...]:
    bands = _scatter(
        rng,
        leaf,
        density=(0.35, 0.8),
        length=(18.0, 50.0),
        aspect=(0.15, 0.35),
        tilt=0.05,
        wobble=0.2,
        in_view=1,
    )
    # Most spots sit on a band: the disease's last stage is spots coalescing into necrosis.
    scattered = _spots(rng, leaf, (2.5, 6.0), in_view=3)
    count = len(scattered.u)
    on_band = (rng.random(count) < 0.6) & (len(bands.u) > 0)
    pick = rng.integers(0, max(len(bands.u), 1), count)
    if len(bands.u) > 0:
        along = rng.uniform(-0.5, 0.5, count) * bands.length[pick]
        angle = np.where(bands.v[pick] >= 0, leaf.vein_angle, -leaf.vein_angle)
        u = np.where(on_band, bands.u[pick] + along * np.cos(angle), scattered.u)
        v = np.where(on_band, bands.v[pick] + along * np.sin(angle), scattered.v)
    else:
        u, v = scattered.u, scattered.v
    spots = _Marks(u, v, scattered.length, scattered.width, scattered.tilt, scattered.wobble)
    return (
        _Paint(bands, _jitter(rng, (0.22, 0.14, 0.09), 0.02), soften_mm=0.2),
        _Paint(bands, _jitter(rng, (0.58, 0.54, 0.46), 0.01), scale=0.85, soften_mm=0.4),
        _Paint(
            spots, _jitter(rng, (0.62, 0.56, 0.25), 0.03), scale=1.3, opacity=0.35, soften_mm=0.5
        ),
        _Paint(spots, _jitter(rng, (0.10, 0.08, 0.06), 0.01), soften_mm=0.12),
        _Paint(
            spots,
            _jitter(rng, (0.80, 0.78, 0.72), 0.02),
            scale=rng.uniform(0.55, 0.75),
            opacity=0.95,
            soften_mm=0.15,
        ),
    )


_SYMPTOMS = (_healthy, _stage1, _stage2, _stage3, _stage4, _stage5, _stage6)
