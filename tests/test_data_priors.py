"""Training priors that look like test time: mask_warp rollouts over real GOPs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvos.codec.motion import warp_labels
from cvos.data import EvalSequence, VOSData
from cvos.data.priors import DRIFT_PROBABILITIES, warped_labels
from cvos.inference import Propagator, StreamTiming, stream
from cvos.models import mask_warp_config

TINY = {"num_train": 2, "num_val": 1, "min_frames": 30, "max_frames": 30, "height": 56, "width": 88}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> VOSData:
    module = VOSData(
        name="synthetic", cache_dir=tmp_path_factory.mktemp("cache"), gop_size=6,
        crop_size=(48, 80), batch_size=2, num_workers=0, prepare_workers=1, synthetic=TINY,
    )  # fmt: skip
    module.prepare("train", progress=False)
    return module


def test_a_prior_is_what_mask_warp_holds_at_the_frame_before_the_key(data: VOSData) -> None:
    prepared = data.open_split("train")[0]
    warped = warped_labels(prepared)
    sequence = next(s for s in data.eval_sequences("train") if s.name == prepared.meta.sequence)
    frames = list(sequence.frames())
    for start in (0, 6, 12):
        labels = [
            output.labels
            for _, output in stream(
                Propagator(None, mask_warp_config()), frames[start:],
                {0: prepared.label(start)}, StreamTiming(),
            )
        ]  # fmt: skip
        keys = [k for s, k in warped.maps if s == start]
        assert keys == [start + 6 * n for n in range(1, len(keys) + 1)]
        assert len(keys) == min(len(DRIFT_PROBABILITIES), (29 - start) // 6)
        for key in keys:
            np.testing.assert_array_equal(warped.prior(start, key), labels[key - 1 - start])


def test_drift_starts_are_drawn_nearest_first_and_at_most_four_gops_back(data: VOSData) -> None:
    warped = warped_labels(data.open_split("train")[1])
    assert warped.starts(24) == [18, 12, 6, 0] and warped.starts(0) == []
    rng = np.random.default_rng(0)
    draws = [warped.draw_start(24, rng) for _ in range(4000)]
    shares = [draws.count(s) / len(draws) for s in (18, 12, 6, 0)]
    np.testing.assert_allclose(shares, DRIFT_PROBABILITIES, atol=0.03)
    assert warped.draw_start(0, rng) is None
    moved = warped.prior(0, 24) != data.open_split("train")[1].label(24)
    assert moved.mean() > 0.01  # four GOPs of drift: the prior is off the truth


def test_samples_read_drifted_priors_and_the_residual_before_their_key(data: VOSData) -> None:
    dataset = data.training_set()
    assert dataset.priors is not None and len(dataset.priors) == 2
    late = [i for i, c in enumerate(dataset.candidates) if c.key >= 12 and c.target > c.key]
    samples = [dataset[i, dataset.candidates[i].references[0], i] for i in late[:20]]
    differ = [float((s.key_prior > 0.5).ne(s.key_mask > 0.5).float().mean()) for s in samples]
    assert max(differ) > 0.01
    assert all(float(s.key_residual.abs().max()) > 0 for s in samples)


def test_a_pseudo_iframe_decodes_the_target_with_the_prior_mask_warp_holds_before_it(
    data: VOSData,
) -> None:
    plain = VOSData(
        name="synthetic", cache_dir=data.cache_dir, gop_size=6, num_workers=0,
        prepare_workers=1, synthetic=TINY,
        augment={"reference": {}, "clip": {}, "pseudo_iframes": 1.0, "perturb": 0.0,
                 "true_key_prior": 1.0},
    )  # fmt: skip
    dataset = plain.training_set()
    index = next(i for i, c in enumerate(dataset.candidates) if c.target - c.key == 4)
    candidate = dataset.candidates[index]
    sample = dataset[index, candidate.references[0], 0]
    assert int(sample.gop_position) == 0  # no P-frame target: the I-frame decoder alone
    assert torch.equal(sample.key_image, sample.target_image)
    assert torch.equal(sample.key_mask, sample.target_mask)
    prepared = plain.open_split("train")[candidate.sequence]
    frames = list(EvalSequence(**{**vars(plain.eval_sequences("train")[0]), "prepared": prepared,
                                  "decode": True}).frames())  # fmt: skip
    expected = warp_labels(prepared.label(candidate.key), frames[candidate.target - 1].mv_acc)
    expected = expected == candidate.object_id  # the whole frame: no crop, no augmentation
    np.testing.assert_array_equal(sample.key_prior[0].numpy() > 0.5, expected)
    assert sample.key_residual.abs().max() > 0
