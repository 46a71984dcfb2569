"""A banana leaf and the Black Sigatoka symptoms painted on it, stage by stage on the Fouré scale.

The leaf is laid out in millimetres along (u, v): u along the midrib, v across it. Lesions are
ellipses that follow the lateral veins, scattered over the lamina and kept off the midrib. Each
class paints what the Fouré scale describes, and earlier symptoms linger in later stages:

- healthy: a few pale flecks of dust or dried water;
- stage 1: sub-millimetre yellowish to rusty specks over a faint yellowing;
- stage 2: light-brown streaks of 2-3 mm along the veins;
- stage 3: longer, dark-brown streaks;
- stage 4: dark-brown to black oval spots with a brown rim;
- stage 5: black spots with a yellow halo and a greyish, sunken centre;
- stage 6: spots coalesced into necrotic bands, with dry light-grey centres.

Nothing here knows about cameras: `leafwatch.model.synth` photographs the leaf.
"""

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Lesions are scattered over a square of this half-size around the view centre, so the leaf's
# content does not depend on the camera's aspect or rotation.
_SCENE_HALF_MM = 90.0
# Vertices of a mark's outline (its wobble has one factor per vertex).
POLYGON_VERTICES = 14
# Within this radius of the centre every camera sees the scene, whatever its aspect, rotation or
# zoom (half the shorter side at the closest zoom, less a margin).
_ALWAYS_SEEN_MM = 24.0

Float = NDArray[np.float32]
RGB = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Marks:
    """Elliptical marks on the leaf, in millimetres along (u, v): the midrib and across it."""

    u: Float
    v: Float
    length: Float  # full major axis, along the veins
    width: Float  # full minor axis
    tilt: Float  # radians off the vein direction
    wobble: Float  # (n, vertices) radius factors, for ragged outlines


@dataclass(frozen=True, slots=True)
class Paint:
    """A colour laid on the lamina through the outlines of some marks, scaled."""

    marks: Marks
    colour: RGB
    scale: float = 1.0
    opacity: float = 1.0
    soften_mm: float = 0.12


@dataclass(frozen=True, slots=True)
class Leaf:
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
    paints: tuple[Paint, ...] = field(default=())


def sample_leaf(rng: np.random.Generator, class_id: int) -> Leaf:
    """Draw one leaf of a class, its symptoms included, from the leaf's own random stream."""
    greens = np.array([[0.16, 0.35, 0.10], [0.25, 0.47, 0.14], [0.37, 0.55, 0.17]], np.float32)
    t = rng.uniform(0.0, 2.0)
    low = int(min(t, 1.0))
    colour = greens[low] + (t - low) * (greens[low + 1] - greens[low])
    colour = colour + rng.normal(0.0, 0.015, 3).astype(np.float32)
    midrib = np.array([0.56, 0.64, 0.32], np.float32) + rng.normal(0.0, 0.03, 3).astype(np.float32)
    leaf = Leaf(
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
    leaf: Leaf,
    *,
    density: tuple[float, float],
    length: tuple[float, float],
    aspect: tuple[float, float],
    tilt: float = 0.06,
    wobble: float = 0.08,
    in_view: int = 0,
) -> Marks:
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


def _always_seen(leaf: Leaf, u: NDArray[np.float64], v: NDArray[np.float64]) -> NDArray[np.bool_]:
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
) -> Marks:
    count = len(u)
    lengths = rng.uniform(*length, count)
    return Marks(
        u=u.astype(np.float32),
        v=v.astype(np.float32),
        length=lengths.astype(np.float32),
        width=(lengths * rng.uniform(*aspect, count)).astype(np.float32),
        tilt=rng.normal(0.0, tilt, count).astype(np.float32),
        wobble=np.clip(1.0 + rng.normal(0.0, wobble, (count, POLYGON_VERTICES)), 0.6, 1.4).astype(
            np.float32
        ),
    )


def _healthy(rng: np.random.Generator, leaf: Leaf) -> tuple[Paint, ...]:
    # Healthy leaves are not spotless: a few pale flecks of dust or dried water.
    flecks = _scatter(rng, leaf, density=(0.0, 4.0), length=(0.3, 0.8), aspect=(0.6, 1.0))
    colour = _jitter(rng, (0.62, 0.70, 0.52), 0.02)
    return (Paint(flecks, colour, opacity=rng.uniform(0.4, 0.7), soften_mm=0.08),)


def _specks(
    rng: np.random.Generator, leaf: Leaf, density: tuple[float, float], in_view: int = 0
) -> Paint:
    """Stage 1's sign: sub-millimetre yellowish to rusty specks."""
    marks = _scatter(
        rng, leaf, density=density, length=(0.3, 0.9), aspect=(0.6, 1.0), in_view=in_view
    )
    tint = rng.uniform(0.0, 1.0)
    colour = _rgb(np.array([0.58, 0.48, 0.18]) * (1 - tint) + np.array([0.50, 0.30, 0.14]) * tint)
    return Paint(marks, _jitter(rng, colour), opacity=rng.uniform(0.75, 0.95), soften_mm=0.08)


def _discolour(rng: np.random.Generator, leaf: Leaf, opacity: tuple[float, float]) -> Paint:
    """Faint, diffuse yellowing of the lamina."""
    marks = _scatter(rng, leaf, density=(0.3, 0.8), length=(8.0, 20.0), aspect=(0.5, 0.9))
    colour = _jitter(rng, (0.52, 0.56, 0.16), 0.02)
    return Paint(marks, colour, opacity=rng.uniform(*opacity), soften_mm=2.5)


def _light_streaks(
    rng: np.random.Generator, leaf: Leaf, density: tuple[float, float], in_view: int = 0
) -> Paint:
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
    return Paint(marks, colour, opacity=rng.uniform(0.85, 1.0), soften_mm=0.1)


def _dark_streaks(
    rng: np.random.Generator, leaf: Leaf, density: tuple[float, float], in_view: int = 0
) -> Paint:
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
    return Paint(marks, colour, opacity=rng.uniform(0.9, 1.0), soften_mm=0.12)


def _spots(
    rng: np.random.Generator, leaf: Leaf, density: tuple[float, float], in_view: int = 0
) -> Marks:
    """Oval spots of Stage 4 onwards, along the veins."""
    return _scatter(
        rng, leaf, density=density, length=(3.5, 7.5), aspect=(0.45, 0.7), tilt=0.1, in_view=in_view
    )


def _stage1(rng: np.random.Generator, leaf: Leaf) -> tuple[Paint, ...]:
    return (_discolour(rng, leaf, (0.15, 0.32)), _specks(rng, leaf, (20.0, 80.0), in_view=25))


def _stage2(rng: np.random.Generator, leaf: Leaf) -> tuple[Paint, ...]:
    return (
        _discolour(rng, leaf, (0.1, 0.25)),
        _specks(rng, leaf, (0.0, 12.0)),
        _light_streaks(rng, leaf, (6.0, 22.0), in_view=8),
    )


def _stage3(rng: np.random.Generator, leaf: Leaf) -> tuple[Paint, ...]:
    # Earlier symptoms linger as the disease moves on: here and in later stages.
    return (
        _specks(rng, leaf, (0.0, 8.0)),
        _light_streaks(rng, leaf, (0.0, 5.0)),
        _dark_streaks(rng, leaf, (2.5, 9.0), in_view=4),
    )


def _stage4(rng: np.random.Generator, leaf: Leaf) -> tuple[Paint, ...]:
    spots = _spots(rng, leaf, (1.2, 4.5), in_view=3)
    rim = _jitter(rng, (0.30, 0.18, 0.10), 0.02)
    core = _jitter(rng, (0.14, 0.10, 0.07), 0.015)
    return (
        _light_streaks(rng, leaf, (0.0, 3.0)),
        _dark_streaks(rng, leaf, (0.0, 1.5)),
        Paint(spots, rim, scale=1.12, soften_mm=0.15),
        Paint(spots, core, soften_mm=0.12),
    )


def _stage5(rng: np.random.Generator, leaf: Leaf) -> tuple[Paint, ...]:
    spots = _spots(rng, leaf, (1.2, 4.5), in_view=3)
    halo = _jitter(rng, (0.78, 0.74, 0.22), 0.03)
    return (
        _dark_streaks(rng, leaf, (0.0, 1.5)),
        Paint(
            spots, halo, scale=rng.uniform(1.5, 1.9), opacity=rng.uniform(0.6, 0.85), soften_mm=0.6
        ),
        Paint(spots, _jitter(rng, (0.07, 0.06, 0.05), 0.01), soften_mm=0.12),
        Paint(
            spots,
            _jitter(rng, (0.42, 0.40, 0.37), 0.02),
            scale=rng.uniform(0.35, 0.5),
            opacity=0.85,
            soften_mm=0.2,
        ),
    )


def _stage6(rng: np.random.Generator, leaf: Leaf) -> tuple[Paint, ...]:
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
    spots = Marks(u, v, scattered.length, scattered.width, scattered.tilt, scattered.wobble)
    return (
        Paint(bands, _jitter(rng, (0.22, 0.14, 0.09), 0.02), soften_mm=0.2),
        Paint(bands, _jitter(rng, (0.58, 0.54, 0.46), 0.01), scale=0.85, soften_mm=0.4),
        Paint(
            spots, _jitter(rng, (0.62, 0.56, 0.25), 0.03), scale=1.3, opacity=0.35, soften_mm=0.5
        ),
        Paint(spots, _jitter(rng, (0.10, 0.08, 0.06), 0.01), soften_mm=0.12),
        Paint(
            spots,
            _jitter(rng, (0.80, 0.78, 0.72), 0.02),
            scale=rng.uniform(0.55, 0.75),
            opacity=0.95,
            soften_mm=0.15,
        ),
    )


_SYMPTOMS = (_healthy, _stage1, _stage2, _stage3, _stage4, _stage5, _stage6)
