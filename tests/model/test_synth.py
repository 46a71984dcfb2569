"""The leaf generator: deterministic, the symptoms differ by class, and each nuisance acts."""

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from leafwatch.model.labels import NUM_CLASSES
from leafwatch.model.synth import (
    BACKGROUNDS,
    Nuisance,
    class_counts,
    generate_dataset,
    leaf_jpeg,
    render_leaf,
)

# One square camera with no random nuisance: differences come from what a test changes.
STILL = Nuisance(
    brightness=(1.0, 1.0),
    blur=(0.0, 0.0),
    background=("soil",),
    resolution=((256, 256),),
    jpeg_quality=(90, 90),
    rotation=(0.0, 0.0),
)
ON_SKY = dataclasses.replace(STILL, background=("sky",))
ON_BENCH = dataclasses.replace(STILL, background=("bench",))


def pixels(image: Image.Image) -> NDArray[np.float64]:
    return np.asarray(image, dtype=np.float64)


def laplacian_variance(image: Image.Image) -> float:
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    lap = gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4 * gray[1:-1, 1:-1]
    return float(lap.var())


def lamina(class_id: int, *, seed: int, index: int) -> NDArray[np.float64]:
    """The leaf's pixels, (n, 3): what stays put when only the background changes."""
    sky = pixels(render_leaf(class_id, seed=seed, index=index, nuisance=ON_SKY))
    bench = pixels(render_leaf(class_id, seed=seed, index=index, nuisance=ON_BENCH))
    return sky[np.abs(sky - bench).max(axis=-1) < 20]


def lesion_fraction(rgb: NDArray[np.float64]) -> float:
    """Share of pixels that are brown, grey or black: lesion colours, never healthy lamina."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    brown = (r > g + 8) & (r > b + 15)
    dark = rgb.max(axis=-1) < 55
    grey = (np.abs(r - g) < 12) & (np.abs(g - b) < 25) & (r > 90)
    return float((brown | dark | grey).mean())


def test_same_seed_and_index_give_the_same_bytes() -> None:
    for class_id in range(NUM_CLASSES):
        first = leaf_jpeg(class_id, seed=11, index=3)
        assert first == leaf_jpeg(class_id, seed=11, index=3)
        assert first[:2] == b"\xff\xd8"


def test_an_image_regenerates_alone_whatever_was_rendered_before() -> None:
    alone = render_leaf(4, seed=5, index=9).tobytes()
    for index in range(3):
        render_leaf(2, seed=5, index=index)
    assert render_leaf(4, seed=5, index=9).tobytes() == alone


def test_different_seeds_and_indices_give_different_images() -> None:
    base = render_leaf(3, seed=1, index=0).tobytes()
    assert render_leaf(3, seed=2, index=0).tobytes() != base
    assert render_leaf(3, seed=1, index=1).tobytes() != base


@pytest.mark.parametrize("class_id", range(NUM_CLASSES))
@pytest.mark.parametrize("size", [(256, 256), (320, 240), (240, 320), (1024, 576), (96, 128)])
def test_every_class_renders_at_the_requested_resolution(
    class_id: int, size: tuple[int, int]
) -> None:
    nuisance = dataclasses.replace(Nuisance(), resolution=(size,))
    image = render_leaf(class_id, seed=0, index=1, nuisance=nuisance)
    assert image.mode == "RGB"
    assert image.size == size
    decoded = Image.open(io.BytesIO(leaf_jpeg(class_id, seed=0, index=1, nuisance=nuisance)))
    assert decoded.size == size


def test_default_nuisance_varies_the_photographs() -> None:
    sizes = {render_leaf(0, seed=3, index=i).size for i in range(30)}
    assert sizes == set(Nuisance().resolution)


def test_darker_brightness_lowers_the_mean() -> None:
    dark = dataclasses.replace(STILL, brightness=(0.5, 0.5))
    for index in range(3):
        normal = pixels(render_leaf(2, seed=4, index=index, nuisance=STILL)).mean()
        darker = pixels(render_leaf(2, seed=4, index=index, nuisance=dark)).mean()
        assert darker < 0.6 * normal


def test_blur_lowers_the_laplacian_variance() -> None:
    blurry = dataclasses.replace(STILL, blur=(2.0, 2.0))
    for index in range(3):
        sharp = laplacian_variance(render_leaf(5, seed=4, index=index, nuisance=STILL))
        soft = laplacian_variance(render_leaf(5, seed=4, index=index, nuisance=blurry))
        assert soft < 0.3 * sharp


def test_rotation_changes_the_pixels_but_not_the_leaf() -> None:
    turned = dataclasses.replace(STILL, rotation=(40.0, 40.0))
    straight = pixels(render_leaf(6, seed=8, index=0, nuisance=STILL))
    rotated = pixels(render_leaf(6, seed=8, index=0, nuisance=turned))
    assert np.abs(straight - rotated).mean() > 10
    # The same leaf, photographed at an angle: the mean colour barely moves.
    assert np.abs(straight.mean(axis=(0, 1)) - rotated.mean(axis=(0, 1))).max() < 25


@pytest.mark.parametrize("kind", BACKGROUNDS)
def test_each_background_changes_only_what_is_around_the_leaf(kind: str) -> None:
    scene = dataclasses.replace(STILL, background=(kind,))
    other = dataclasses.replace(STILL, background=("sky",) if kind != "sky" else ("bench",))
    first = pixels(render_leaf(0, seed=2, index=5, nuisance=scene))
    second = pixels(render_leaf(0, seed=2, index=5, nuisance=other))
    changed = np.abs(first - second).max(axis=-1) > 30
    # Some of the picture is background, most of it is the same leaf.
    assert 0.02 < changed.mean() < 0.8


def test_jpeg_quality_sets_the_file_size() -> None:
    low = dataclasses.replace(STILL, jpeg_quality=(30, 30))
    high = dataclasses.replace(STILL, jpeg_quality=(97, 97))
    assert len(leaf_jpeg(1, seed=0, index=0, nuisance=low)) < 0.6 * len(
        leaf_jpeg(1, seed=0, index=0, nuisance=high)
    )


def test_nuisance_refuses_impossible_ranges() -> None:
    with pytest.raises(ValueError, match="brightness"):
        Nuisance(brightness=(1.2, 0.8))
    with pytest.raises(ValueError, match="background"):
        Nuisance(background=("moon",))
    with pytest.raises(ValueError, match="resolution"):
        Nuisance(resolution=((0, 240),))
    with pytest.raises(ValueError, match="jpeg_quality"):
        Nuisance(jpeg_quality=(50, 101))


def test_nuisance_as_dict_is_json_ready() -> None:
    assert Nuisance().as_dict()["resolution"] == [list(pair) for pair in Nuisance().resolution]


def test_unknown_class_or_negative_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="class_id"):
        render_leaf(NUM_CLASSES, seed=0, index=0)
    with pytest.raises(ValueError, match="seed"):
        render_leaf(0, seed=-1, index=0)


def test_healthy_leaves_have_far_fewer_lesion_pixels_than_late_stages() -> None:
    healthy = [lesion_fraction(lamina(0, seed=9, index=i)) for i in range(8)]
    assert max(healthy) < 0.002
    for class_id in (4, 5, 6):
        late = [lesion_fraction(lamina(class_id, seed=9, index=i)) for i in range(8)]
        assert min(late) > 0.01
        assert np.median(late) > 20 * max(max(healthy), 1e-4)


def share(class_id: int, colour: str, *, images: int = 6) -> float:
    """Mean share of lamina pixels of a colour over a few leaves of a class."""
    values = []
    for index in range(images):
        rgb = lamina(class_id, seed=21, index=index)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        spread = rgb.max(axis=-1) - rgb.min(axis=-1)
        mask = {
            "black": rgb.max(axis=-1) < 45,
            "yellow": (r > 140) & (r - g > -15) & (b < 0.5 * r),
            "grey_white": (rgb.min(axis=-1) > 150) & (spread < 40),
            "brown": (r > g + 8) & (r > b + 15),
        }[colour]
        values.append(mask.mean())
    return float(np.mean(values))


def test_late_stages_show_their_own_colours() -> None:
    # Black from Stage 4 on, Stage 5's yellow halo, Stage 6's grey-white centres.
    assert share(4, "black") > 20 * max(share(0, "black"), share(2, "black"), 1e-5)
    assert share(5, "yellow") > 5 * max(share(4, "yellow"), 1e-4)
    assert share(6, "grey_white") > 10 * max(share(5, "grey_white"), share(4, "grey_white"), 1e-4)


def test_streaks_are_brown_and_stage3_darker_and_longer_than_stage2() -> None:
    assert share(2, "brown") > 20 * max(share(0, "brown"), 1e-5)
    assert share(3, "brown") > 20 * max(share(0, "brown"), 1e-5)
    light = np.concatenate([lamina(2, seed=4, index=i) for i in range(4)])
    dark = np.concatenate([lamina(3, seed=4, index=i) for i in range(4)])
    brown_light = light[(light[:, 0] > light[:, 1] + 8) & (light[:, 0] > light[:, 2] + 15)]
    brown_dark = dark[(dark[:, 0] > dark[:, 1] + 8) & (dark[:, 0] > dark[:, 2] + 15)]
    assert brown_dark.mean() < brown_light.mean() - 20


def test_stage1_specks_mark_less_lamina_than_streaks() -> None:
    def mean_fraction(class_id: int) -> float:
        return float(
            np.mean([lesion_fraction(lamina(class_id, seed=3, index=i)) for i in range(6)])
        )

    assert mean_fraction(0) < mean_fraction(1) < mean_fraction(3)


def test_class_counts_follow_the_weights_and_keep_the_total() -> None:
    assert class_counts(10) == [10] * NUM_CLASSES
    counts = class_counts(10, [4, 1, 1, 1, 1, 1, 1])
    assert sum(counts) == 70
    assert counts[0] == 28
    assert class_counts(3, [1, 0, 0, 0, 0, 0, 0]) == [21, 0, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="class_weights"):
        class_counts(3, [1, 2])


def test_generate_dataset_writes_one_folder_per_class(tmp_path: Path) -> None:
    out_dir = tmp_path / "leaves"
    paths = generate_dataset(
        out_dir,
        per_class=2,
        seed=5,
        nuisance=Nuisance(),
        class_weights=[0, 0, 0, 0, 0, 1, 1],
        progress=False,
    )
    assert len(paths) == 14
    assert {path.parent.name for path in paths} == {"Stage5", "Stage6"}
    assert {path.name for path in out_dir.iterdir()} == {"Stage5", "Stage6"}
    assert sorted(path.name for path in (out_dir / "Stage5").iterdir()) == [
        f"{i}.jpg" for i in range(7)
    ]
    assert paths[0].read_bytes() == leaf_jpeg(5, seed=5, index=0, nuisance=Nuisance())
