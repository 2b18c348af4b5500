"""Geometry of network inputs: frames, masks and motion fields stay consistent under one map."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.ndimage import map_coordinates

from cvos.codec import CompressedFrame, CompressedVideo, PictureType, encode_video
from cvos.codec.synthetic import moving_square_video
from cvos.data.samples import _binary_pair
from cvos.data.transforms import Augment, dilate_or_erode, sample_affine, transform_masks
from cvos.errors import CVOSError
from cvos.models import frame_inputs, geometry, resize_affine
from cvos.models.geometry import sample_bilinear, sample_nearest, unit_to_bytes

SIZE = (120, 200)


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


def panning_clip(shift: tuple[int, int] = (8, 3)) -> SimpleNamespace:
    """A camera pan by `shift` (dx, dy) from the I-frame to the target, with a square object:
    the target frame (codec arrays: bgr, mv, mv_acc, residual_acc) and both masks."""
    rng = np.random.default_rng(0)
    h, w = SIZE
    key_mask = np.zeros((h, w), np.uint8)
    key_mask[35:85, 60:140] = 1
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mv_acc = np.empty((h, w, 2), np.int16)
    mv_acc[:] = shift
    residual = rng.integers(-255, 256, (h, w, 3)).astype(np.int16)
    target = SimpleNamespace(bgr=image, mv=mv_acc.copy(), mv_acc=mv_acc, residual_acc=residual)
    target_mask = np.roll(key_mask, shift=(shift[1], shift[0]), axis=(0, 1))
    return SimpleNamespace(frame=target, key_mask=key_mask, target_mask=target_mask)


def transformed(clip: SimpleNamespace, affine) -> tuple:
    """The target's inputs and the [key, target] masks (2 x h x w) through one map."""
    inputs = frame_inputs(clip.frame, affine)
    return inputs, transform_masks([clip.key_mask, clip.target_mask], affine)


def test_identity_map_reproduces_the_input_with_residuals_in_rgb() -> None:
    clip = panning_clip()
    inputs, masks = transformed(clip, resize_affine(SIZE, SIZE))
    rgb = clip.frame.bgr[..., ::-1]
    np.testing.assert_allclose(inputs.image.permute(1, 2, 0).numpy() * 255, rgb, atol=0.01)
    np.testing.assert_array_equal(inputs.mv_acc.permute(1, 2, 0).numpy(), clip.frame.mv_acc)
    residual_rgb = clip.frame.residual_acc[..., ::-1] / 255.0
    np.testing.assert_allclose(inputs.residual_acc.permute(1, 2, 0).numpy(), residual_rgb)
    np.testing.assert_array_equal(masks[1].numpy(), clip.target_mask)


def test_flip_mirrors_fields_and_negates_dx() -> None:
    clip = panning_clip()
    affine = sample_affine(SIZE, SIZE, SIZE, Augment(flip_p=1.0), np.random.default_rng(0))
    inputs, masks = transformed(clip, affine)
    expected = clip.frame.mv_acc[:, ::-1].astype(np.float32) * np.array([-1, 1], np.float32)
    np.testing.assert_array_equal(inputs.mv_acc.permute(1, 2, 0).numpy(), expected)
    np.testing.assert_array_equal(masks[0].numpy(), clip.key_mask[:, ::-1])


def test_resize_scales_vectors_by_the_same_factors() -> None:
    clip = panning_clip()
    inputs, _ = transformed(clip, resize_affine(SIZE, (240, 100)))  # x2 down, /2 across
    assert torch.all(inputs.mv_acc.flatten(1) == torch.tensor([[4.0], [6.0]]))


def test_resize_matches_interpolation_with_pixel_edges_aligned() -> None:
    """Stretching to the network size samples like F.interpolate(align_corners=False)."""
    image = np.random.default_rng(1).integers(0, 256, (60, 100, 1)).astype(np.uint8)
    ours = sample_bilinear([image], resize_affine((60, 100), (48, 64)))
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None].float(),
        size=(48, 64),
        mode="bilinear",
        align_corners=False,
    )[0]
    torch.testing.assert_close(ours, reference, atol=0.01, rtol=0)


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
    before = iou(warp_by_motion(clip.key_mask, clip.frame.mv_acc), clip.target_mask)
    assert before == 1.0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        affine = sample_affine(SIZE, (96, 160), (96, 128), AUGMENTS[name], rng)
        inputs, masks = transformed(clip, affine)
        field = inputs.mv_acc.permute(1, 2, 0).numpy()
        assert iou(warp_by_motion(masks[0].numpy(), field), masks[1].numpy()) >= 0.95


def test_vectors_left_untransformed_do_not_fit() -> None:
    """The control of the test above: resampling the field without mapping the vectors fails."""
    clip = panning_clip()
    rng = np.random.default_rng(0)
    affine = sample_affine(SIZE, (96, 160), (96, 128), AUGMENTS["all"], rng)
    _, masks = transformed(clip, affine)
    stale = sample_nearest([clip.frame.mv_acc], affine).permute(1, 2, 0).numpy()
    assert iou(warp_by_motion(masks[0].numpy(), stale), masks[1].numpy()) < 0.7


def test_outside_the_frame_reads_zero() -> None:
    image = np.full((10, 10, 1), 7, np.uint8)
    affine = sample_affine(
        (10, 10), (10, 10), (10, 10), Augment(scale_range=(0.5, 0.5)), np.random.default_rng(0)
    )
    for sample in (sample_nearest, sample_bilinear):
        out = sample([image], affine)[0]
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


def grid_sample_reference(arrays: list[np.ndarray], affine) -> torch.Tensor:
    """Bilinear sampling by torch's grid_sample on a float32 copy of the whole frame, 0 outside
    it (for maps that read the whole frame, the same grid sample_bilinear uses)."""
    height, width = arrays[0].shape[:2]
    frame = torch.from_numpy(np.concatenate(arrays, axis=2).astype(np.float32)).permute(2, 0, 1)
    xs, ys = affine.sources()
    grid = np.stack((xs * (2.0 / (width - 1)) - 1.0, ys * (2.0 / (height - 1)) - 1.0), axis=-1)
    out = torch.nn.functional.grid_sample(
        frame[None], torch.from_numpy(grid.astype(np.float32))[None], "bilinear", "border", True
    )[0]
    inside = (xs >= -0.5) & (xs <= width - 0.5) & (ys >= -0.5) & (ys <= height - 0.5)
    return out * torch.from_numpy(inside)


def nearest_reference(arrays: list[np.ndarray], affine) -> torch.Tensor:
    """sample_nearest by plain fancy indexing: float32 of the nearest pixel, times inside."""
    height, width = arrays[0].shape[:2]
    xs, ys = affine.sources()
    cols, rows = np.floor(xs + 0.5).astype(int), np.floor(ys + 0.5).astype(int)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    frame = np.concatenate([a.astype(np.float32) for a in arrays], axis=2)
    picked = frame[rows.clip(0, height - 1), cols.clip(0, width - 1)] * inside[..., None]
    return torch.from_numpy(picked).permute(2, 0, 1)


def as_float(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """float32 copies: what the samplers read with torch's grid_sample and numpy indexing."""
    return [a.astype(np.float32) for a in arrays]


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal float32 tensors, down to the sign of zeros."""
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


GEOMETRIES = {  # name: (frame size, input size, crop size, augment)
    "480p to 256 x 512, flips": ((480, 854), (256, 512), (256, 512), Augment(flip_p=0.5)),
    "paper augmentation": (
        (120, 200),
        (96, 160),
        (64, 96),
        Augment(flip_p=0.5, max_rotation=30.0, scale_range=(0.75, 1.25), max_translation=0.05),
    ),
    "zoomed out past the frame": ((50, 70), (50, 70), (40, 60), Augment(scale_range=(0.4, 0.6))),
}


@pytest.mark.parametrize("name", GEOMETRIES)
def test_compiled_samplers_equal_grid_sample_and_indexing_bit_for_bit(name: str) -> None:
    """The compiled loops read uint8 images and masks and int16 / int32 fields in place (BGR
    reversed, crops): every value must be the one torch's grid_sample and numpy indexing give
    on float32 copies (the way every dtype was sampled before), -0 outside included."""
    in_size, input_size, crop_size, augment = GEOMETRIES[name]
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (*in_size, 3), dtype=np.uint8)
    mask = (rng.random(in_size) < 0.5).astype(np.uint8)[..., None]
    masks = (rng.random((*in_size, 2)) < 0.5).astype(np.uint8)  # two masks, interleaved
    vectors = rng.integers(-300, 300, (*in_size, 2), dtype=np.int32)
    residual = rng.integers(-255, 256, (*in_size, 3)).astype(np.int16)
    for _ in range(8):
        affine = sample_affine(in_size, input_size, crop_size, augment, rng)
        for arrays in ([bgr[..., ::-1]], [mask, bgr], [masks]):
            ours = sample_bilinear(arrays, affine)
            assert same_bits(ours, sample_bilinear(as_float(arrays), affine))
            if name.startswith("480p"):  # the whole frame is read: the plain reference holds
                assert same_bits(ours, grid_sample_reference(arrays, affine))
        for arrays in ([vectors, residual], [mask], [bgr[..., ::-1]], [bgr[:, 1:]]):
            ours = sample_nearest(arrays, affine)
            assert same_bits(ours, sample_nearest(as_float(arrays), affine))
            assert same_bits(ours, nearest_reference(arrays, affine))


@pytest.mark.parametrize(
    ("augment", "computed_at_taps"),
    [
        (Augment(flip_p=0.5, scale_range=(1.0, 1.3)), True),
        (Augment(max_rotation=30.0), False),  # taps not axis-aligned
        (Augment(scale_range=(0.4, 0.6)), False),  # taps outside the frame
    ],
)
def test_the_residual_sampled_at_its_taps_alone_is_the_full_residual_sampled(
    tmp_path: Path, augment: Augment, computed_at_taps: bool
) -> None:
    """Decoded P-frames give the same residual input, bit for bit, whether the codec computes
    it at the taps alone (maps without rotation that read inside the frame) or in full."""
    video = moving_square_video(6, 80, 112)
    encoded = encode_video(video.frames, tmp_path / "square.m4v")
    rng = np.random.default_rng(5)
    with CompressedVideo(encoded.path) as reader:
        for frame in list(reader)[1:]:
            affine = sample_affine((80, 112), (64, 96), (64, 96), augment, rng)
            lazy = frame_inputs(frame, affine, ("residual_acc",)).residual_acc
            assert ("residual_acc" not in vars(frame)) == computed_at_taps
            names = ("bgr", "mv", "mv_acc", "residual", "residual_acc")
            arrays = (getattr(frame, name) for name in names)
            stored = CompressedFrame.from_arrays(1, 0, 1, PictureType.P, *arrays)
            full = frame_inputs(stored, affine, ("residual_acc",)).residual_acc
            assert same_bits(lazy, full) and lazy.abs().sum() > 10


def test_the_480p_resize_reads_pinned_values() -> None:
    """Known values of the stretch of a 480p frame to 256 x 512 (a flip-free training map):
    output pixel (200, 100) reads around frame point (333.93, 187.94)."""
    image = (np.arange(480 * 854 * 3) % 251).astype(np.uint8).reshape(480, 854, 3)
    affine = resize_affine((480, 854), (256, 512))
    out = sample_bilinear([image], affine)
    assert out.shape == (3, 256, 512)
    assert out[:, 100, 200].tolist() == [232.533203125, 233.533203125, 234.533203125]


def test_a_missing_sampler_build_is_reported_with_how_to_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    geometry._samplers.cache_clear()
    try:
        with pytest.raises(CVOSError, match="_samplers.c is not compiled.*C compiler"):
            sample_nearest([np.zeros((8, 8, 1), np.uint8)], resize_affine((8, 8), (4, 4)))
    finally:
        geometry._samplers.cache_clear()


def test_dilation_and_erosion_equal_scipys_filters_with_nearest_borders() -> None:
    """The shifted extremes give scipy's maximum / minimum filter (mode "nearest"), odd and
    even kernels, on frames smaller than the kernel too."""
    rng = np.random.default_rng(5)
    for shape in ((64, 96), (5, 3), (1, 7)):
        mask = (rng.random(shape) < 0.4).astype(np.uint8)
        for kernel in range(-10, 11):
            size = abs(kernel)
            morphology = ndimage.maximum_filter if kernel > 0 else ndimage.minimum_filter
            expected = mask if size <= 1 else morphology(mask, size=size, mode="nearest")
            np.testing.assert_array_equal(dilate_or_erode(mask, kernel), expected)


def test_image_bytes_round_255_x_halves_to_even_as_torch_does() -> None:
    generator = torch.Generator().manual_seed(0)
    grid = torch.arange(511, dtype=torch.float32) / 510  # products at and next to the halves
    values = torch.cat((torch.rand(100_000, generator=generator), grid, torch.tensor([0.0, 1.0])))
    expected = values.mul(255.0).round_().numpy().astype(np.uint8)
    out = torch.empty(values.shape, dtype=torch.uint8)
    unit_to_bytes(values, out)
    np.testing.assert_array_equal(out.numpy(), expected)
    half_up = np.floor(values.mul(255.0).numpy() + 0.5)
    assert (out.numpy() != half_up).any()  # the grid holds halves, which go to even
    with pytest.raises(ValueError, match="expected float32 values and a uint8 out of one shape"):
        unit_to_bytes(values[:10], out)


def test_two_masks_interleaved_sample_as_two_masks_apart() -> None:
    """The bilinear sampler reads two interleaved masks with one gather a corner (the pair
    `TrainDataset` builds for a sample's two mask priors): each channel is bit for bit what
    it gives for that mask alone."""
    rng = np.random.default_rng(4)
    labels = [rng.integers(0, 3, (480, 854), dtype=np.uint8) for _ in range(2)]
    pair = _binary_pair(*labels, object_id=1)
    assert pair.shape == (480, 854, 2) and pair.strides[1:] == (2, 1)
    for channel, values in enumerate(labels):
        np.testing.assert_array_equal(pair[..., channel], values == 1)
    for _ in range(4):
        affine = sample_affine((480, 854), (256, 512), (256, 512), Augment(flip_p=0.5), rng)
        apart = [(values == 1).view(np.uint8)[..., None] for values in labels]
        assert same_bits(sample_bilinear([pair], affine), sample_bilinear(apart, affine))
