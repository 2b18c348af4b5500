"""The DataModule: training batches, motion-consistent augmentation on codec output, eval videos."""

from __future__ import annotations

import os
from dataclasses import replace as dataclass_replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from data_fixtures import tiny_videos, write_ytvos
from test_data_transforms import iou, warp_by_motion

import cvos.data.samples
import cvos.data.transport
from cvos.codec import PictureType
from cvos.data import EvalSequence, TrainBatch, VOSData, VOSDataModule
from cvos.data.samples import PACKED_DTYPES
from cvos.data.sampling import SampleKey
from cvos.data.transforms import Augment, dilate_or_erode, sample_affine, transform_masks
from cvos.errors import ConfigError, DataError
from cvos.inference import Propagator, StreamTiming, stream
from cvos.models import NetConfig, build_net, frame_inputs
from cvos.models.geometry import sample_nearest
from cvos.models.inputs import FIELDS

TINY = {"num_train": 3, "num_val": 2, "min_frames": 14, "max_frames": 14, "height": 56, "width": 88}


def synthetic_module(cache_dir: Path, **overrides: object) -> VOSData:
    options = {
        "name": "synthetic",
        "cache_dir": cache_dir,
        "gop_size": 6,
        "crop_size": (48, 80),
        "batch_size": 4,
        "num_workers": 0,
        "samples_per_epoch": 8,
        "prepare_workers": 1,
        "synthetic": TINY,
    }
    return VOSData(**{**options, **overrides})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> VOSData:
    module = synthetic_module(tmp_path_factory.mktemp("cache"))
    module.prepare_all()
    module.training_set()
    return module


def test_training_batch_has_the_documented_shapes_and_dtypes(data: VOSData) -> None:
    batches = list(data.train_loader())
    assert len(batches) == 2  # samples_per_epoch / batch_size
    packed = batches[0]
    assert {k: v.dtype for k, v in packed.tensors().items() if k in PACKED_DTYPES} == PACKED_DTYPES
    batch = packed.unpacked()
    assert isinstance(batch, TrainBatch)
    shapes = {name: tuple(value.shape) for name, value in batch.tensors().items()}
    channels = {"ref_image": 3, "key_image": 3, "target_image": 3, "residual_acc": 3}
    channels.update(key_residual=3, mv_acc=2)
    for name, shape in shapes.items():
        if name != "gop_position":
            assert shape == (4, channels.get(name, 2 if name == "mv" else 1), 48, 80), name
    assert shapes["gop_position"] == (4,) and batch.gop_position.dtype == torch.int64
    assert all(v.dtype == torch.float32 for k, v in batch.tensors().items() if k != "gop_position")
    for name in ("ref_mask", "key_mask", "target_mask"):
        assert set(torch.unique(getattr(batch, name)).tolist()) <= {0.0, 1.0}
    assert batch.ref_mask.sum() > 0
    for name in ("ref_image", "key_image", "target_image", "gauss", "key_prior", "target_prior"):
        assert getattr(batch, name).min() >= 0.0 and getattr(batch, name).max() <= 1.0
    assert batch.residual_acc.abs().max() <= 1.0
    assert batch.gop_position.min() >= 0 and batch.gop_position.max() < 6


def test_packed_batches_unpack_to_the_samples(data: VOSData) -> None:
    dataset = data.training_set()
    samples = [dataset[key] for key in list(data.sampler())[:4]]
    batch = TrainBatch.collate(samples).unpacked()
    for index, sample in enumerate(samples):
        for name, value in sample.tensors().items():
            got = getattr(batch, name)[index]
            tolerance = {"mv_acc": 0.02, "mv": 0.02}.get(name, 0.5 / 255 + 1e-6)
            assert (got - value).abs().max() <= tolerance, name


# per-field sums of a 16-sample epoch of the flips-only synthetic set (the base config's
# augmentation: maps without rotation, which the compiled samplers take), computed before the
# loader was sped up; any change to a value of any sample shows here
PINNED_EPOCH_SUMS = {
    "ref_image": 16989863.0,
    "ref_mask": 2939.0,
    "key_image": 16580731.0,
    "key_mask": 2827.0,
    "key_prior": 3006.9831132888794,
    "key_residual": 55.78358459472656,
    "target_image": 16719036.0,
    "target_mask": 2916.0,
    "target_prior": 2791.721137046814,
    "mv_acc": -707.0,
    "residual_acc": 89.26663208007812,
    "mv": 1931.0,
    "gauss": 6481.431295692921,
    "gop_position": 18.0,
}


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_of_packed_batches_keeps_its_pinned_values(data: VOSData, workers: int) -> None:
    """Same seed, same samples, bit for bit, in the main process and in loader workers."""
    flips = {"reference": {"flip_p": 0.5}, "clip": {"flip_p": 0.5}}
    module = synthetic_module(
        data.cache_dir, augment=flips, num_workers=workers, samples_per_epoch=16
    )
    sums = dict.fromkeys(PINNED_EPOCH_SUMS, 0.0)
    for batch in module.train_loader():
        for name in sums:
            sums[name] += getattr(batch, name).double().sum().item()
    assert sums == PINNED_EPOCH_SUMS


def test_a_packed_batch_converts_each_field_once_into_one_storage(data: VOSData) -> None:
    """Images become round(255 x) in uint8, float fields float16, as a per-field stack did;
    all fields are views of one storage (one shared-memory segment from a worker)."""
    dataset = data.training_set()
    samples = [dataset[key] for key in list(data.sampler())[:4]]
    batch = TrainBatch.collate(samples)
    for name, packed in batch.tensors().items():
        values = torch.stack([getattr(sample, name) for sample in samples])
        if name in ("ref_image", "key_image", "target_image"):
            values = values.mul(255.0).round()
        assert torch.equal(packed, values.to(PACKED_DTYPES.get(name, values.dtype))), name
    pointers = {value.untyped_storage().data_ptr() for value in batch.tensors().values()}
    assert len(pointers) == 1


def as_worker(monkeypatch: pytest.MonkeyPatch) -> cvos.data.transport.SegmentPool:
    """Make `TrainBatch.collate` pack as a loader worker does, into a pool of its own."""
    pool = cvos.data.transport.SegmentPool(kept=3)
    monkeypatch.setattr(cvos.data.samples, "_SEGMENTS", pool)
    monkeypatch.setattr(cvos.data.samples, "get_worker_info", lambda: object())
    return pool


def test_a_worker_packs_into_shared_memory_it_reuses_once_handed_back(
    data: VOSData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bytes as in the main process, after a header, in one shared segment; a segment
    handed back takes the next batch, one still held does not, a smaller batch fits a larger
    segment, and only the last `kept` segments are kept."""
    dataset = data.training_set()
    keys = list(data.sampler())
    groups = [keys[:4], keys[4:8], keys[:2]]  # the last one smaller
    expected = [TrainBatch.collate([dataset[key] for key in group]) for group in groups]
    pool = as_worker(monkeypatch)

    def packed(group: int) -> TrainBatch:
        batch = TrainBatch.collate([dataset[key] for key in groups[group]])
        for name, value in batch.tensors().items():
            assert torch.equal(value, expected[group].tensors()[name]), name
        storage = batch.mv.untyped_storage()
        assert storage.is_shared() and batch.ref_image.storage_offset() == 64 and batch.lease > 0
        assert {t.untyped_storage().data_ptr() for t in batch.tensors().values()} == {
            storage.data_ptr()
        }
        return batch

    def segment(batch: TrainBatch) -> int:
        return batch.mv.untyped_storage().data_ptr()

    first = packed(0)
    held = packed(1)  # the first is still held: a second segment
    assert segment(held) != segment(first)
    first.release()
    assert segment(packed(2)) == segment(first)  # the smaller batch, in the segment handed back
    kept = [packed(0) for _ in range(3)]  # none handed back: new segments, the oldest let go
    assert len({segment(b) for b in [first, held, *kept]}) == 5 and len(pool._segments) == 3


def test_a_packed_batch_hands_back_its_segment_once_copied_out_and_is_then_refused(
    data: VOSData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpacking releases a worker's batch; moving it to where it is (cpu) does not; reading a
    released batch is an error, and a stale release never frees a later batch's segment."""
    dataset = data.training_set()
    samples = [dataset[key] for key in list(data.sampler())[:4]]
    expected = TrainBatch.collate(samples).unpacked()
    as_worker(monkeypatch)
    batch = TrainBatch.collate(samples)
    assert batch.to("cpu") is batch and batch.lease > 0
    unpacked = batch.unpacked()
    for name, value in unpacked.tensors().items():
        assert torch.equal(value, expected.tensors()[name]), name
    with pytest.raises(RuntimeError, match="went back to its loader worker"):
        batch.unpacked()
    reused = TrainBatch.collate(samples)  # in the same segment
    assert reused.mv.untyped_storage().data_ptr() == batch.mv.untyped_storage().data_ptr()
    stale = TrainBatch(**batch.__dict__ | {"lease": 1})  # an old ticket of that segment
    stale.release()
    held = TrainBatch.collate(samples)
    assert held.mv.untyped_storage().data_ptr() != reused.mv.untyped_storage().data_ptr()
    assert torch.equal(unpacked.gop_position, expected.gop_position)  # its own memory
    copied = held.apply(torch.Tensor.clone)
    assert copied.lease == 0 and held.lease > 0


def test_loader_workers_reuse_the_segments_the_training_loop_hands_back(
    tmp_path: Path,
) -> None:
    """Through a DataLoader with two workers: every batch equals the main process's, and
    with each batch unpacked (handed back) before the next, a worker cycles through a few
    segments instead of making one a batch."""
    module = synthetic_module(
        tmp_path, num_workers=2, samples_per_epoch=96, persistent_workers=False
    )
    module.prepare_all()
    dataset, keys = module.training_set(), list(module.sampler())
    expected = [
        TrainBatch.collate([dataset[key] for key in keys[start : start + 4]]).unpacked()
        for start in range(0, len(keys), 4)
    ]
    segments = set()
    for index, batch in enumerate(module.train_loader()):
        header = cvos.data.transport._header(batch.ref_image.untyped_storage())
        segments.add(header.tobytes()[16:32])  # the worker's process and the segment's number
        unpacked = batch.unpacked()
        for name, value in unpacked.tensors().items():
            assert torch.equal(value, expected[index].tensors()[name]), (index, name)
    assert index == 23 and len(segments) <= 8  # 24 without reuse


def test_inputs_a_block_shares_are_sampled_once_a_map_and_change_no_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under flips alone, a block's samples read its I-frame's image and the residual before it
    through two maps: most of those samplings are copies, and every sample is as before."""
    flips = {"reference": {"flip_p": 0.5}, "clip": {"flip_p": 0.5}}
    module = synthetic_module(tmp_path, augment=flips, crop_size=None, samples_per_epoch=32)
    module.prepare_all()
    dataset = module.training_set()
    keys = list(module.sampler())
    calls = []
    sample_inputs = cvos.data.samples.frame_inputs

    def counted(frame: object, affine: object, fields: tuple[str, ...] = FIELDS) -> object:
        calls.append(fields)
        return sample_inputs(frame, affine, fields)

    monkeypatch.setattr(cvos.data.samples, "frame_inputs", counted)
    shared = [dataset[key] for key in keys]
    with_copies = len(calls)
    monkeypatch.setattr(cvos.data.samples, "SHARED_INPUTS", 0)
    for key, expected in zip(keys, shared, strict=True):
        for name, value in dataset[key].tensors().items():
            assert torch.equal(value, getattr(expected, name)), name
    assert (with_copies, len(calls) - with_copies) == (77, 115)  # frame_inputs calls


class DtypeProbe(pl.LightningModule):
    """Fails unless every training batch reaches it as documented (float32)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch: TrainBatch, batch_idx: int) -> torch.Tensor:
        floats = [v for k, v in batch.tensors().items() if k != "gop_position"]
        assert all(v.dtype == torch.float32 for v in floats)
        return (self.weight - batch.key_image.mean()) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_unpacks_batches_on_the_device(data: VOSData) -> None:
    trainer = pl.Trainer(
        accelerator="cpu", fast_dev_run=2, logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(DtypeProbe(), datamodule=VOSDataModule(data))
    assert trainer.global_step == 2


def test_iframes_are_targets_too(data: VOSData) -> None:
    dataset = data.training_set()
    positions = [c.target - c.key for c in dataset.candidates]
    assert 0 < positions.count(0) < len(positions)
    index = positions.index(0)
    sample = dataset[SampleKey(index, dataset.candidates[index].references[0], 0)]
    assert int(sample.gop_position) == 0
    assert torch.equal(sample.key_image, sample.target_image)
    assert torch.equal(sample.key_mask, sample.target_mask)
    for name in ("mv_acc", "mv", "residual_acc"):
        assert getattr(sample, name).abs().max() == 0


def test_samples_are_reproducible_from_their_seed(data: VOSData) -> None:
    dataset = data.training_set()
    reference = dataset.candidates[5].references[0]
    a, b = dataset[SampleKey(5, reference, 1)], dataset[SampleKey(5, reference, 1)]
    c = dataset[SampleKey(5, reference, 2)]
    assert torch.equal(a.ref_image, b.ref_image) and torch.equal(a.gauss, b.gauss)
    assert torch.equal(a.key_prior, b.key_prior) and torch.equal(a.target_prior, b.target_prior)
    assert not torch.equal(b.gauss, c.gauss)


def test_codec_vectors_stay_consistent_under_augmentation(data: VOSData) -> None:
    """Warping the transformed I-frame mask with the transformed codec vectors fits the
    transformed target as well as before the transform (flip + resize + crop + translation)."""
    augment = Augment(flip_p=1.0, scale_range=(0.8, 1.1), max_translation=0.05)
    before, after, stale = [], [], []
    rng = np.random.default_rng(0)
    for prepared in data.open_split("train"):
        labels, mv_acc = prepared.labels(), prepared.array("mv_acc")
        size = (prepared.meta.height, prepared.meta.width)
        for t in range(prepared.meta.num_frames):
            key = prepared.meta.key_index(t)
            if key == t:
                continue
            for obj in prepared.meta.objects[t]:
                key_mask = (labels[key] == obj.object_id).view(np.uint8)
                target_mask = (labels[t] == obj.object_id).view(np.uint8)
                before.append(iou(warp_by_motion(key_mask, np.asarray(mv_acc[t])), target_mask))
                affine = sample_affine(size, (56, 96), (48, 80), augment, rng)
                zeros = np.zeros((*size, 3), np.uint8)
                frame = SimpleNamespace(
                    bgr=zeros, mv=mv_acc[t], mv_acc=mv_acc[t], residual_acc=zeros
                )
                field = frame_inputs(frame, affine, ("mv_acc",)).mv_acc.permute(1, 2, 0).numpy()
                moved_key, moved_target = transform_masks([key_mask, target_mask], affine).numpy()
                after.append(iou(warp_by_motion(moved_key, field), moved_target))
                unmapped = sample_nearest([mv_acc[t]], affine).permute(1, 2, 0).numpy()
                stale.append(iou(warp_by_motion(moved_key, unmapped), moved_target))
    assert len(before) > 20
    assert np.mean(after) >= np.mean(before) - 0.03
    assert np.mean(stale) < np.mean(after) - 0.05  # control: vectors left as they were do not fit


def test_a_sample_without_augmentation_holds_what_the_network_gets_at_inference(
    data: VOSData,
) -> None:
    """The tensors of a training sample for frame t are those the propagator hands the network
    for frame t of the decoded video: one function turns frames into inputs for both."""
    plain = synthetic_module(
        data.cache_dir, input_size=(48, 80), augment={"reference": {}, "clip": {}}
    )
    dataset = plain.training_set()
    index = next(i for i, c in enumerate(dataset.candidates) if c.target - c.key == 4)
    candidate = dataset.candidates[index]
    sample = dataset[SampleKey(index, candidate.references[0], 0)]
    sequence = plain.eval_sequences("train")[candidate.sequence]
    config = NetConfig(input_size=(48, 80), embed_dim=16)
    seen = {}
    for propagation in ("feature", "framewise"):
        net = build_net(dataclass_replace(config, propagation=propagation)).eval()
        record_calls(net, seen, propagation)
        propagator = Propagator(net, dataclass_replace(config, propagation=propagation))
        frames = sequence.frames()
        list(stream(propagator, frames, sequence.init_masks, StreamTiming()))
    encoded = seen["framewise", "encode"]
    torch.testing.assert_close(sample.key_image, encoded[candidate.key][0][0], rtol=0, atol=0)
    torch.testing.assert_close(sample.target_image, encoded[candidate.target][0][0], rtol=0, atol=0)
    p_frames = [t for t, kind in enumerate(sequence.prepared.meta.picture_types) if kind == "P"]
    propagated = seen["feature", "propagate"][p_frames.index(candidate.target)]
    mv_acc, residual_acc, mv, _ = propagated[1:]
    for name, tensor in (("mv_acc", mv_acc), ("residual_acc", residual_acc), ("mv", mv)):
        torch.testing.assert_close(getattr(sample, name), tensor[0], rtol=0, atol=0, msg=name)
    assert sample.mv_acc.abs().max() > 0 and sample.residual_acc.abs().max() > 0


def record_calls(net: torch.nn.Module, seen: dict, propagation: str) -> None:
    """Record the arguments of `net.encode` and `net.propagate`, frame by frame."""
    for method in ("encode", "propagate"):
        calls = seen.setdefault((propagation, method), [])
        original = getattr(net, method)

        def wrapper(*args, _original=original, _calls=calls, **kwargs):
            _calls.append(args)
            return _original(*args, **kwargs)

        setattr(net, method, wrapper)


def test_worker_processes_deliver_batches(data: VOSData) -> None:
    module = synthetic_module(data.cache_dir, num_workers=2, persistent_workers=True)
    loader = module.train_loader()
    assert loader.persistent_workers and loader.num_workers == 2
    batches = [batch.target_mask.shape for batch in loader]
    assert batches == [torch.Size([4, 1, 48, 80])] * 2


def test_validation_streams_whole_sequences(data: VOSData) -> None:
    sequences = list(data.val_loader())
    assert len(sequences) == 2 and all(isinstance(s, EvalSequence) for s in sequences)
    sequence = sequences[0]
    assert (sequence.height, sequence.width) == (56, 88) and len(sequence.frame_names) == 14
    assert list(sequence.init_masks) == [0] and sequence.first_frames == {
        i: 0 for i in sequence.object_ids
    }
    np.testing.assert_array_equal(sequence.init_masks[0], sequence.gt_masks[0])
    assert sequence.object_ids == sorted(set(np.unique(sequence.gt_masks[0])) - {0})
    frames = list(sequence.frames())
    assert [f.index for f in frames] == list(range(14))
    assert [f.picture_type for f in frames if f.gop_position == 0] == [PictureType.I] * 3
    assert frames[7].bgr.shape == (56, 88, 3) and np.issubdtype(frames[7].mv_acc.dtype, np.integer)
    np.testing.assert_array_equal(frames[7].rgb, frames[7].bgr[..., ::-1])


def test_max_val_sequences(data: VOSData) -> None:
    module = synthetic_module(data.cache_dir, max_val_sequences=1)
    assert [s.name for s in module.eval_sequences("val")] == ["val-000"]


def test_each_gop_size_and_synthetic_spec_has_its_own_cache(data: VOSData) -> None:
    reseeded = synthetic_module(data.cache_dir, synthetic={**TINY, "seed": 1})
    assert reseeded.prepared_dir.parent != data.prepared_dir.parent
    other = synthetic_module(data.cache_dir, gop_size=4)
    assert other.prepared_dir != data.prepared_dir
    assert other.prepared_dir.name == "mpeg4-gop4-q5" and data.prepared_dir.name == "mpeg4-gop6-q5"
    with pytest.raises(DataError, match="is not prepared"):
        other.training_set()
    other.prepare(other.train_split, progress=False)
    assert other.open_split("train")[0].meta.picture_types.startswith("IPPPIPPPI")
    assert data.open_split("train")[0].meta.picture_types.startswith("IPPPPPIPPPPPI")


def test_youtube_vos_sparse_masks_and_late_objects(tmp_path: Path) -> None:
    videos = {name: v for name, v in tiny_videos(5, frames=12).items() if v[1].max() > 1}
    root = write_ytvos(tmp_path / "ytvos", "train", videos, mask_every=3)
    write_ytvos(
        root, "valid", {f"valid-{name}": video for name, video in videos.items()}
    )  # ids differ per split
    module = VOSData(
        name="ytvos", layout="ytvos", root=root, cache_dir=tmp_path / "cache", gop_size=6,
        crop_size=(32, 64), num_workers=0, val_split="valid", prepare_workers=1,
    )  # fmt: skip
    module.prepare_all()
    for candidate in module.training_set().candidates:
        assert candidate.target % 3 == 0 and candidate.key % 6 == 0  # annotated target and I-frame
        assert candidate.previous == max(candidate.target - 3, 0)
    sequence = module.eval_sequences("valid")[0]
    late = max(sequence.object_ids)
    assert sequence.gt_masks is None
    assert sequence.first_frames[late] >= 6 and min(sequence.first_frames.values()) == 0
    start = sequence.init_masks[sequence.first_frames[late]]
    assert set(np.unique(start)) == {0, late}  # only the objects that start there


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="data=davis16 needs its dataset folder"):
        VOSData(name="davis16", layout="davis2016")
    with pytest.raises(ConfigError, match="crop_size"):
        VOSData(name="synthetic", synthetic={}, crop_size=(4, 4))
    with pytest.raises(ConfigError, match="samples_per_epoch=2 is below data.batch_size=4"):
        VOSData(name="synthetic", synthetic={}, samples_per_epoch=2, batch_size=4)
    with pytest.raises(ConfigError, match="data.augment"):
        VOSData(name="synthetic", synthetic={}, augment={"flip": 0.5})
    with pytest.raises(ConfigError, match="data.gop_size must be a whole number"):
        VOSData(name="synthetic", synthetic={}, gop_size=0)


def test_real_davis2016_batch(davis2016_root: Path, tmp_path: Path) -> None:
    """A training batch at the paper's 256 x 512 from the shortest real sequence (symlinked)."""
    name = min(
        os.listdir(davis2016_root / "JPEGImages" / "480p"),
        key=lambda n: len(os.listdir(davis2016_root / "JPEGImages" / "480p" / n)),
    )
    root = tmp_path / "davis"
    for folder in ("JPEGImages", "Annotations"):
        (root / folder / "480p").mkdir(parents=True)
        (root / folder / "480p" / name).symlink_to(davis2016_root / folder / "480p" / name)
    (root / "ImageSets" / "480p").mkdir(parents=True)
    frames = sorted(os.listdir(root / "JPEGImages" / "480p" / name))
    lines = [f"/JPEGImages/480p/{name}/{f} /Annotations/480p/{name}/{f[:-4]}.png" for f in frames]
    (root / "ImageSets" / "480p" / "train.txt").write_text("\n".join(lines))
    module = VOSData(
        name="davis16", layout="davis2016", root=root, cache_dir=tmp_path / "cache",
        crop_size=(256, 512), batch_size=2, num_workers=0, samples_per_epoch=2, val_split="train",
    )  # fmt: skip
    module.prepare_all()
    batch = next(iter(module.train_loader())).unpacked()
    assert batch.key_image.shape == (2, 3, 256, 512) and batch.mv_acc.shape == (2, 2, 256, 512)
    assert batch.gauss.shape == (2, 1, 256, 512) and batch.ref_mask.sum() > 100
    assert batch.key_prior.shape == batch.target_prior.shape == (2, 1, 256, 512)
    assert batch.mv_acc.dtype == torch.float32
    sequence = module.eval_sequences("train")[0]
    assert (sequence.height, sequence.width) == (480, 854) and sequence.object_ids == [1]
    assert sequence.gt_masks.shape == (len(frames), 480, 854)


@pytest.mark.parametrize("size", [3, 5, 7])
def test_window_maxima_equal_max_pool_bit_for_bit(size: int) -> None:
    """A perturbed prior's dilation (and, negated, erosion) is max_pool2d's, -0 included."""
    generator = torch.Generator().manual_seed(size)
    for shape in ((1, 64, 96), (1, 3, 2), (1, 1, 9)):
        prior = torch.rand(shape, generator=generator).mul(2).sub(0.5).clamp(0, 1)
        for sign in (1.0, -1.0):
            pooled = F.max_pool2d(sign * prior[None], (size, 1), 1, (size // 2, 0))
            expected = sign * F.max_pool2d(pooled, (1, size), 1, (0, size // 2))[0]
            got = torch.from_numpy(dilate_or_erode(prior[0].numpy(), int(sign) * size))[None]
            assert torch.equal(got.view(torch.int32), expected.view(torch.int32))
