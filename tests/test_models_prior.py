"""The Gaussian location prior: robust centre and spread, jitter, empty masks."""

import numpy as np
import pytest

from cvos.models import gaussian_prior


def test_centre_and_spread_are_median_and_scaled_mad() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((90, 120), np.uint8)
    ys, xs = rng.integers(20, 70, 400), rng.integers(10, 110, 400)
    mask[ys, xs] = 1
    prior = gaussian_prior(mask, min_sigma=1.0)
    py, px = np.nonzero(mask)
    cy, cx = np.median(py), np.median(px)
    sy = 1.4826 * np.median(np.abs(py - cy))
    sx = 1.4826 * np.median(np.abs(px - cx))
    yy, xx = np.mgrid[0:90, 0:120]
    expected = np.exp(-0.5 * ((yy - cy) / sy) ** 2 - 0.5 * ((xx - cx) / sx) ** 2)
    assert prior.dtype == np.float32 and prior.shape == (90, 120)
    np.testing.assert_allclose(prior, expected, atol=1e-5)


def test_stray_pixels_do_not_move_the_centre() -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 40:60] = 1
    mask[0, 99] = 1  # one far-away false positive
    prior = gaussian_prior(mask)
    peak = np.unravel_index(np.argmax(prior), prior.shape)
    assert abs(peak[0] - 49.5) <= 1 and abs(peak[1] - 49.5) <= 1


def test_min_sigma_bounds_the_spread_of_tiny_masks() -> None:
    mask = np.zeros((50, 50), np.uint8)
    mask[25, 25] = 1
    prior = gaussian_prior(mask, min_sigma=5.0)
    assert prior[25, 25] == pytest.approx(1.0)
    assert prior[25, 30] == pytest.approx(np.exp(-0.5), rel=1e-5)  # one sigma = 5 px away


def test_empty_mask_gives_no_location_information() -> None:
    prior = gaussian_prior(np.zeros((20, 30), np.uint8))
    assert prior.shape == (20, 30) and np.all(prior == 1.0)


def test_jitter_moves_centre_within_bounds_and_is_seeded() -> None:
    mask = np.zeros((200, 200), np.uint8)
    mask[50:150, 80:120] = 1
    plain = gaussian_prior(mask)
    peaks = []
    for seed in range(20):
        jittered = gaussian_prior(
            mask, jitter=0.2, scale_range=(1 / 1.4, 1.4), rng=np.random.default_rng(seed)
        )
        again = gaussian_prior(
            mask, jitter=0.2, scale_range=(1 / 1.4, 1.4), rng=np.random.default_rng(seed)
        )
        np.testing.assert_array_equal(jittered, again)
        peaks.append(np.unravel_index(np.argmax(jittered), jittered.shape))
    peaks = np.array(peaks)
    plain_peak = np.array(np.unravel_index(np.argmax(plain), plain.shape))
    spread_y = 1.4826 * 25  # MAD of a uniform 100-px run is 25
    assert np.abs(peaks[:, 0] - plain_peak[0]).max() <= 0.2 * spread_y + 1
    assert len({tuple(p) for p in peaks}) > 5  # it does move
