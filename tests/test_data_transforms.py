"""Geometric augmentation: frames, masks and motion fields stay consistent under one map."""

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from cvos.data.transforms import (
    Augment,
    ClipArrays,
    dilate_or_erode,
    resize_affine,
    sample_affine,
    transform_clip,
    warp,
)


def warp_by_motion(mask: np.ndarray, field: np.ndarray) -> np.ndarray:
    """The I-frame mask moved to the target: out[y, x] = mask[y - dy, x - dx] (bilinear, > 0.5)."""
    h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = np.stack([ys - field[..., 1], xs - field[..., 0]])
    return (map_coordinates(mask.astype(np.float64), coords, order=1, cval=0.0) > 0.5).astype(
        np.uint8
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max((a | b).sum(), 1))


def panning_clip(shift: tuple[int, int] = (8, 3)) -> ClipArrays:
    """A camera pan by `shift` (dx, dy) from the I-frame to the target, with a square object."""
    rng = np.random.default_rng(0)
    h, w = 120, 200
    key_mask = np.zeros((h, w), np.uint8)
    key_mask[35:85, 60:140] = 1
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mv_acc = np.empty((h, w, 2), np.int16)
    mv_acc[:] = shift
    return ClipArrays(
        key_image=image,
        target_image=np.roll(image, shift=(shift[1], shift[0]), axis=(0, 1)),
        residual_acc=np.zeros((h, w, 3), np.int16),
        mv_acc=mv_acc,
        mv=mv_acc.copy(),
        key_mask=key_mask,
        target_mask=np.roll(key_mask, shift=(shift[1], shift[0]), axis=(0, 1)),
        prev_mask=key_mask,
    )


def test_identity_map_reproduces_the_input() -> None:
    clip = panning_clip()
    out = transform_clip(clip, resize_affine((120, 200), (120, 200)))
    np.testing.assert_allclose(
        out.key_image.permute(1, 2, 0).numpy() * 255, clip.key_image, atol=0.01
    )
    np.testing.assert_array_equal(out.mv_acc.permute(1, 2, 0).numpy(), clip.mv_acc)
    np.testing.assert_array_equal(out.target_mask[0].numpy(), clip.target_mask)


def test_flip_mirrors_fields_and_negates_dx() -> None:
    clip = panning_clip()
    affine = sample_affine((120, 200), (120, 200), Augment(flip_p=1.0), np.random.default_rng(0))
    out = transform_clip(clip, affine)
    expected = clip.mv_acc[:, ::-1].astype(np.float32) * np.array([-1, 1], np.float32)
    np.testing.assert_array_equal(out.mv_acc.permute(1, 2, 0).numpy(), expected)
    np.testing.assert_array_equal(out.key_mask[0].numpy(), clip.key_mask[:, ::-1])


def test_resize_scales_vectors_by_the_same_factors() -> None:
    clip = panning_clip()
    out = transform_clip(clip, resize_affine((60, 100), (120, 200)))  # x2 both ways
    assert torch.all(out.mv_acc.flatten(1) == torch.tensor([[16.0], [6.0]]))


AUGMENTS = {
    "flip": Augment(flip_p=1.0),
    "resize": Augment(scale_range=(0.7, 0.7)),
    "rotation": Augment(max_rotation=10.0),
    "translation": Augment(max_translation=0.05),
    "all": Augment(flip_p=1.0, max_rotation=10.0, scale_range=(0.8, 1.2), max_translation=0.05),
}


@pytest.mark.parametrize("name", AUGMENTS)
def test_warping_transformed_mask_matches_transformed_target(name: str) -> None:
    """Warping the I-frame mask by the motion fits the target as well after the map as before
    (up to rounding along the object's border)."""
    clip = panning_clip()
    before = iou(warp_by_motion(clip.key_mask, clip.mv_acc), clip.target_mask)
    assert before == 1.0
    for seed in range(3):
        affine = sample_affine((120, 200), (96, 128), AUGMENTS[name], np.random.default_rng(seed))
        out = transform_clip(clip, affine)
        field = out.mv_acc.permute(1, 2, 0).numpy()
        assert (
            iou(warp_by_motion(out.key_mask[0].numpy(), field), out.target_mask[0].numpy()) >= 0.95
        )


def test_vectors_left_untransformed_do_not_fit() -> None:
    """The control of the test above: resampling the field without mapping the vectors fails."""
    clip = panning_clip()
    affine = sample_affine((120, 200), (96, 128), AUGMENTS["all"], np.random.default_rng(0))
    out = transform_clip(clip, affine)
    stale = warp([clip.mv_acc], affine, "nearest").permute(1, 2, 0).numpy()
    assert iou(warp_by_motion(out.key_mask[0].numpy(), stale), out.target_mask[0].numpy()) < 0.7


def test_warp_reads_zero_outside_the_input() -> None:
    image = np.full((10, 10, 1), 7, np.uint8)
    affine = sample_affine(
        (10, 10), (10, 10), Augment(scale_range=(0.5, 0.5)), np.random.default_rng(0)
    )
    out = warp([image], affine, "nearest")[0]
    assert out[5, 5] == 7 and out[0, 0] == 0


def test_dilate_and_erode_change_area_by_the_kernel() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 1
    assert dilate_or_erode(mask, 5).sum() == 24 * 24
    assert dilate_or_erode(mask, -5).sum() == 16 * 16
    assert dilate_or_erode(mask, 4).sum() == 23 * 23
    np.testing.assert_array_equal(dilate_or_erode(mask, 1), mask)
    edge = np.ones((10, 10), np.uint8)
    np.testing.assert_array_equal(
        dilate_or_erode(edge, -5), edge
    )  # the frame border does not erode
