"""Tests of the CVOS network: encoders, checkpoint names, warping, RSM/SAM, matching decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import Tensor, nn

import cvos.models.decoder as decoder_module
import cvos.models.matching as matching_module
from cvos.data import TrainBatch
from cvos.errors import CheckpointError, ConfigError, DataError
from cvos.lit import CVOSLitModule
from cvos.models import (
    EMPTY_BANK_SCORE,
    ENCODERS,
    CVOSNet,
    NetConfig,
    Reference,
    build_encoder,
    build_net,
    downsample_flow,
    soft_aggregate,
    topk_mean,
    warp,
    warp_mask,
)
from cvos.models.cvosnet import fold_batch_norms
from cvos.models.decoder import (
    DecoderWidths,
    Window,
    band_window,
    boundary_band,
    cell_band,
    summed_area_band,
)
from cvos.models.matching import build_reference, capped, match, match_shared, shared_banks
from cvos.models.propagation import MOTION_SCALE

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SIZE = 64  # test images are SIZE x SIZE unless said otherwise


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny_net(**kwargs: object) -> CVOSNet:
    return CVOSNet(build_encoder("tiny"), embed_dim=32, **kwargs)


# The DAVIS recipe's P-frame path: a decoder whose fine path starts at 1/4, RSM and SAM reading
# their inputs pooled to 1/2.
LIGHT_P = {"pframe_decoder": DecoderWidths(24, 0, 16, 16, 0), "pframe_widths": (16, 32)}


def shifted_interior(image: Tensor, dx: int, dy: int) -> tuple[Tensor, tuple[slice, ...]]:
    """`image` moved by (dx, dy) (target = source + shift) and the slice where it is defined."""
    h, w = image.shape[-2:]
    rows = slice(max(dy, 0), h + min(dy, 0))
    cols = slice(max(dx, 0), w + min(dx, 0))
    return torch.roll(image, shifts=(dy, dx), dims=(-2, -1)), (..., rows, cols)


def constant_flow(
    dx: float, dy: float, h: int, w: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    return torch.tensor([dx, dy], dtype=dtype).view(1, 2, 1, 1).expand(1, 2, h, w)


# ---------------------------------------------------------------- encoders


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_gives_its_registered_channels_at_stride_8(name: str) -> None:
    spec = ENCODERS[name]
    encoder = build_encoder(name).eval()
    with torch.inference_mode():
        out = encoder(torch.randn(1, 3, 32, 48))
    assert spec.stride == encoder.stride == 8
    assert encoder.out_channels == spec.channels
    assert out.shape == (1, spec.channels, 4, 6)


def test_unknown_encoder_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="resnet50") as err:
        build_encoder("resnet5")
    assert "'resnet5'" in str(err.value)


def torchvision_resnet_keys(blocks: tuple[int, ...], bottleneck: bool) -> list[str]:
    """state_dict keys of torchvision.models.resnetNN(), written out from its structure."""

    def bn(prefix: str) -> list[str]:
        stats = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        return [f"{prefix}.{s}" for s in stats]

    keys = ["conv1.weight", *bn("bn1")]
    convs = 3 if bottleneck else 2
    for layer, count in enumerate(blocks, start=1):
        for i in range(count):
            p = f"layer{layer}.{i}"
            for c in range(1, convs + 1):
                keys += [f"{p}.conv{c}.weight", *bn(f"{p}.bn{c}")]
            if i == 0 and (bottleneck or layer > 1):
                keys += [f"{p}.downsample.0.weight", *bn(f"{p}.downsample.1")]
    return [*keys, "fc.weight", "fc.bias"]


@pytest.mark.parametrize(
    ("name", "blocks", "bottleneck", "total"),
    [("resnet18", (2, 2, 2, 2), False, 122), ("resnet50", (3, 4, 6, 3), True, 320)],
)
def test_resnet_keys_match_torchvision(
    name: str, blocks: tuple[int, ...], bottleneck: bool, total: int
) -> None:
    expected = torchvision_resnet_keys(blocks, bottleneck)
    assert len(expected) == total
    state = build_encoder(name).state_dict()
    assert [*state, "fc.weight", "fc.bias"] == expected


def test_resnet_parameter_shapes_match_torchvision() -> None:
    r50 = build_encoder("resnet50").state_dict()
    assert r50["conv1.weight"].shape == (64, 3, 7, 7)
    assert r50["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert r50["layer3.5.conv2.weight"].shape == (256, 256, 3, 3)
    assert r50["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    r18 = build_encoder("resnet18").state_dict()
    assert r18["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert r18["layer4.1.bn2.running_var"].shape == (512,)


def test_resnet_dilates_layer3_and_layer4_like_deeplab() -> None:
    encoder = build_encoder("resnet50")
    assert encoder.layer2[0].conv2.stride == (2, 2)
    assert encoder.layer3[0].conv2.stride == (1, 1)
    assert [b.conv2.dilation[0] for b in encoder.layer3[:2]] == [1, 2]
    assert [b.conv2.dilation[0] for b in encoder.layer4] == [2, 4, 4]


def save_torchvision_like(encoder: nn.Module, path: Path) -> dict[str, Tensor]:
    """A state_dict file as torchvision ships it: backbone plus an fc head."""
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in encoder.state_dict().items()
    }
    torch.save({**state, "fc.weight": torch.randn(1000, 512), "fc.bias": torch.zeros(1000)}, path)
    return state


def test_weights_load_from_a_torchvision_file(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    state = save_torchvision_like(build_encoder("resnet18"), path)
    loaded = build_encoder("resnet18", weights=str(path)).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    save_torchvision_like(build_encoder("resnet18"), path)
    with pytest.raises(CheckpointError, match="missing keys") as err:
        build_encoder("resnet34", weights=path)
    assert str(path) in str(err.value)


def test_weights_with_wrong_shapes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    state = build_encoder("tiny").state_dict()
    state["head.0.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"head\.0\.weight"):
        build_encoder("tiny", weights=path)


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_bad_weights_files_are_refused(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "weights.pth"
    if content is None:
        torch.save([torch.zeros(1)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="weights.pth"):
        build_encoder("tiny", weights=path)


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.pth"):
        build_encoder("tiny", weights=tmp_path / "nope.pth")


def test_frozen_batch_norm_stays_frozen_in_train_mode() -> None:
    net = CVOSNet(build_encoder("tiny", frozen_bn=True), embed_dim=32).train()
    bns = [m for m in net.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [bn.running_mean.clone() for bn in bns]
    net.encode(torch.rand(2, 3, SIZE, SIZE)).sum().backward()
    assert not any(bn.training for bn in bns)
    assert all(torch.equal(bn.running_mean, b) for bn, b in zip(bns, before, strict=True))
    assert all(bn.weight.grad is None and not bn.weight.requires_grad for bn in bns)
    assert net.encoder.body.stages[0][0].weight.grad is not None


def test_unfrozen_batch_norm_updates_its_statistics() -> None:
    net = tiny_net().train()
    bn = net.encoder.body.stages[0][1]
    net.encode(torch.rand(2, 3, SIZE, SIZE))
    assert bn.training and not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_config_files_compose_to_registered_names(name: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=None, overrides=[f"+encoder={name}"]).encoder
    assert dict(cfg) == {"name": name, "weights": None, "frozen_bn": False}


def test_the_wide_compact_encoder_is_the_compact_net_at_one_and_a_half_times_the_width() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=None, overrides=["+encoder=compact_wide"]).encoder
    encoder = build_encoder(**dict(cfg))
    assert (encoder.out_channels, encoder.stride) == (192, 8)
    assert encoder.stage2[0][0].out_channels == 48
    net = CVOSNet(encoder, embed_dim=48)  # the recipe's embedding: P-frames cost the same
    assert net.project.in_channels == 192 and net.rsm.fuse[2].out_channels == 48


# ---------------------------------------------------------------- warping


@pytest.mark.parametrize(("dx", "dy"), [(3, -2), (-5, 4), (0, 1)])
def test_warp_by_integer_shift_reproduces_the_shifted_image_exactly(dx: int, dy: int) -> None:
    image = torch.randn(2, 3, 24, 40, dtype=torch.float64)
    out = warp(image, constant_flow(dx, dy, 24, 40, torch.float64).expand(2, -1, -1, -1))
    expected, interior = shifted_interior(image, dx, dy)
    torch.testing.assert_close(out[interior], expected[interior], rtol=0, atol=1e-12)


def test_warp_in_float32_is_exact_up_to_rounding() -> None:
    image = torch.randn(1, 4, 30, 50)
    out = warp(image, constant_flow(7, 3, 30, 50))
    expected, interior = shifted_interior(image, 7, 3)
    torch.testing.assert_close(out[interior], expected[interior], rtol=0, atol=1e-5)


def test_warp_by_half_a_pixel_averages_neighbours() -> None:
    image = torch.arange(10, dtype=torch.float64).view(1, 1, 1, 10).expand(1, 1, 4, 10)
    out = warp(image, constant_flow(0.5, 0, 4, 10, torch.float64))
    torch.testing.assert_close(out[0, 0, :, 1:], image[0, 0, :, 1:] - 0.5)


def test_warp_pads_with_the_border_value() -> None:
    image = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 2, 8)
    out = warp(image, constant_flow(3, 0, 2, 8))
    assert out[0, 0, 0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4]


def test_warp_refuses_a_flow_of_another_size() -> None:
    with pytest.raises(DataError, match="does not match"):
        warp(torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 4, 4))


def test_one_flow_moves_every_map_of_a_batch_like_its_own_copy() -> None:
    maps = torch.rand(3, 1, 16, 24)
    flow = torch.randn(1, 2, 16, 24) * 3
    shared = warp(maps, flow)
    for o in range(3):
        assert torch.equal(shared[o : o + 1], warp(maps[o : o + 1], flow))


def test_downsample_flow_averages_blocks_and_scales_to_cells() -> None:
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 16.0
    flow[:, 1, :8, :4] = 8.0  # half of the top-left 8 x 8 block moves 8 px down
    cells = downsample_flow(flow, 8)
    assert cells.shape == (1, 2, 2, 2)
    assert torch.all(cells[:, 0] == 2.0)
    assert cells[0, 1].tolist() == [[0.5, 0.0], [0.0, 0.0]]


def test_warp_mask_moves_a_square_by_the_motion() -> None:
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:16, 10:20] = 1.0
    out = warp_mask(mask, constant_flow(4, -3, 32, 32))
    expected = torch.zeros_like(mask)
    expected[..., 5:13, 14:24] = 1.0
    assert torch.equal(out, expected)


def test_propagate_without_modules_warps_key_features_at_feature_resolution() -> None:
    net = tiny_net(use_rsm=False, use_sam=False).eval()
    key = torch.randn(1, 32, 6, 8)
    zeros = torch.zeros(1, 2, 48, 64)
    residual, prior = torch.zeros(1, 3, 48, 64), torch.zeros(1, 1, 48, 64)
    same = net.propagate(key, zeros, residual, zeros, prior)
    torch.testing.assert_close(same.feats, key, rtol=0, atol=1e-6)
    assert same.attention_coarse is None
    moved = net.propagate(key, constant_flow(16, 8, 48, 64), residual, zeros, prior).feats
    expected, interior = shifted_interior(key, 2, 1)
    torch.testing.assert_close(moved[interior], expected[interior], rtol=0, atol=1e-5)


def test_sizes_not_divisible_by_the_stride_are_refused() -> None:
    net = tiny_net()
    with pytest.raises(DataError, match="60x64"):
        net.encode(torch.rand(1, 3, 60, 64))


# ---------------------------------------------------------------- full network


def p_frame_inputs(b: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    mv_acc = torch.randint(-6, 7, (b, 2, SIZE, SIZE)).float()
    mv = torch.randint(-3, 4, (b, 2, SIZE, SIZE)).float()
    residual = torch.rand(b, 3, SIZE, SIZE) * 2 - 1
    prior = torch.rand(b, 1, SIZE, SIZE)
    return mv_acc, residual, mv, prior


def random_batch(b: int) -> TrainBatch:
    """A float32 training batch of P-frame targets (GOP positions 3 and 5), SIZE x SIZE."""
    mv_acc, residual, mv, gauss = p_frame_inputs(b)
    masks = (torch.rand(5, b, 1, SIZE, SIZE) > 0.7).float()
    return TrainBatch(
        ref_image=torch.rand(b, 3, SIZE, SIZE), ref_mask=masks[0],
        key_image=torch.rand(b, 3, SIZE, SIZE), key_mask=masks[1], key_prior=masks[3],
        key_residual=torch.rand(b, 3, SIZE, SIZE) * 2 - 1,
        target_image=torch.rand(b, 3, SIZE, SIZE), target_mask=masks[2], target_prior=masks[4],
        mv_acc=mv_acc, residual_acc=residual, mv=mv, gauss=gauss,
        gop_position=torch.tensor([3, 5]),
    )  # fmt: skip


@pytest.mark.parametrize("light", [False, True])
@pytest.mark.parametrize("use_sam", [False, True])
@pytest.mark.parametrize("use_rsm", [False, True])
def test_training_step_reaches_exactly_the_enabled_modules(
    use_rsm: bool, use_sam: bool, light: bool
) -> None:
    config = NetConfig(
        variant="test", use_rsm=use_rsm, use_sam=use_sam, embed_dim=32,
        **({"pframe_decoder": (24, 0, 16, 16, 0), "pframe_widths": (16, 32)} if light else {}),
    )  # fmt: skip
    module = CVOSLitModule(net=config).train()
    for decoder in (module.net.idec, module.net.pdec):  # zero at init: no gradient gets past
        torch.nn.init.normal_(decoder.out.weight, std=0.01)
    loss = module.training_step(random_batch(2), 0)
    loss.backward()
    net = module.net
    for name, part, on in (("rsm", net.rsm, use_rsm), ("sam", net.sam, use_sam)):
        owned = [n for n, _ in net.named_parameters() if n.startswith(f"{name}.")]
        assert (part is not None) == on and bool(owned) == on
        if on:
            grads = [p.grad for p in part.parameters()]
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert net.encoder.head[0].weight.grad.abs().sum() > 0


def test_scores_are_per_object_and_an_empty_bank_scores_lowest() -> None:
    net = tiny_net().eval()
    masks = torch.zeros(2, 3, SIZE, SIZE)
    masks[:, 0, :20, :20] = 1
    masks[:, 1, 30:, 30:] = 1
    masks[1, 2, 10:12, 50:52] = 1  # object 2 is absent from sample 0
    with torch.inference_mode():
        feats = net.encode(torch.rand(2, 3, SIZE, SIZE))
        ref = net.reference(feats, masks)
        scores = net.scores(feats, ref)
    assert ref.num_objects == 3
    assert scores.shape == (2, 3, 2, SIZE // 8, SIZE // 8)
    assert ref.fg.count.tolist() == [[9, 25, 0], [9, 25, 1]]
    assert torch.all(scores[0, 2, 1] == net.temperature * EMPTY_BANK_SCORE)
    assert torch.all(scores[1, 2, 1] > EMPTY_BANK_SCORE * net.temperature)


def test_batched_scores_equal_scoring_each_sample_alone() -> None:
    """Banks padded to the batch's largest must not change any sample's scores."""
    net = tiny_net(topk=5).eval()
    masks = torch.zeros(2, 2, SIZE, SIZE)
    masks[0, 0, :8, :8] = 1  # 1 cell: far smaller than k and than sample 1's bank
    masks[1, 0, 8:40, 8:40] = 1
    masks[0, 1, 16:, :] = 1
    with torch.inference_mode():
        feats = net.encode(torch.rand(2, 3, SIZE, SIZE))
        batched = net.scores(feats, net.reference(feats, masks))
        for i in range(2):
            one = feats[i : i + 1]
            alone = net.scores(one, net.reference(one, masks[i : i + 1]))
            torch.testing.assert_close(batched[i : i + 1], alone)


def test_scores_match_features_to_the_right_bank() -> None:
    """Foreground cells carry one feature vector and background another: scores are 0 / T."""
    net = tiny_net(topk=3, temperature=10.0).eval()
    inside = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    inside[..., 2:5, 3:7] = True
    feats = torch.where(
        inside, torch.eye(32)[0].view(1, 32, 1, 1), torch.eye(32)[1].view(1, 32, 1, 1)
    )
    masks = F.interpolate(inside.float(), scale_factor=8)
    with torch.inference_mode():
        scores = net.scores(feats, net.reference(feats, masks))[0, 0]
    torch.testing.assert_close(scores[:, 3, 4], torch.tensor([0.0, 10.0]))  # inside
    torch.testing.assert_close(scores[:, 0, 0], torch.tensor([10.0, 0.0]))  # background


def decoder_inputs(objects: int) -> tuple[Tensor, ...]:
    """feats, scores, image, residual and prior of one frame with `objects` objects."""
    feats = torch.randn(objects, 32, SIZE // 8, SIZE // 8)
    scores = torch.randn(objects, 2, SIZE // 8, SIZE // 8) * 10
    image, residual = torch.rand(1, 3, SIZE, SIZE), torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    prior = torch.zeros(objects, 1, SIZE, SIZE)
    prior[:, :, 16:48, 8:40] = 1.0
    return feats, scores, image, residual, prior


@pytest.mark.parametrize("light", [False, True])
def test_an_untrained_decoder_reproduces_its_prior(light: bool) -> None:
    """The correction starts at zero: before training the network is mask_warp."""
    net = tiny_net(**(LIGHT_P if light else {})).eval()
    feats, scores, image, residual, prior = decoder_inputs(2)
    with torch.inference_mode():
        for key in (True, False):
            logits = net.decode(feats, scores, image, residual, prior, key=key)
            assert torch.equal((logits > 0).float(), prior)


@pytest.mark.parametrize("key, light", [(True, False), (False, True)])
def test_decoding_objects_together_equals_decoding_each_alone(key: bool, light: bool) -> None:
    """The image and residual are shared by a frame's objects (the fine path's first conv runs
    its image half once): the same numbers as each object with its own copy."""
    net = tiny_net(**(LIGHT_P if light else {})).eval()
    for module in net.modules():  # a trained-looking decoder: nothing starts at zero
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.1)
    feats, scores, image, residual, prior = decoder_inputs(3)
    prior = torch.rand_like(prior)
    with torch.inference_mode():
        together = net.decode(feats, scores, image, residual, prior, key=key)
        for o in range(3):
            alone = net.decode(
                feats[o : o + 1], scores[o : o + 1], image, residual, prior[o : o + 1], key=key
            )
            torch.testing.assert_close(together[o : o + 1], alone, rtol=1e-4, atol=1e-5)


def test_the_p_frame_band_confines_corrections_to_the_priors_boundary() -> None:
    net = CVOSNet(build_encoder("tiny"), embed_dim=32, pframe_band=3).eval()
    torch.nn.init.constant_(net.pdec.out.bias, 5.0)  # a correction everywhere
    feats, scores, image, residual, prior = decoder_inputs(1)
    with torch.inference_mode():
        logits = net.decode(feats, scores, image, residual, prior, key=False)[0, 0]
    base = torch.logit(prior[0, 0].clamp(0.02, 0.98))
    changed = (logits - base).abs() > 1e-4
    assert changed[16, 20] and changed[13, 20]  # on and just outside the top edge
    assert not changed[30, 24] and not changed[5, 5]  # deep inside, far outside


def test_the_light_p_frame_decoder_corrects_whole_cells_near_the_boundary() -> None:
    net = tiny_net(pframe_band=3, **LIGHT_P).eval()
    torch.nn.init.constant_(net.pdec.out.bias, 5.0)  # a correction everywhere
    feats, scores, image, residual, prior = decoder_inputs(1)  # the prior: rows 16:48, 8:40
    with torch.inference_mode():
        logits = net.decode(feats, scores, image, residual, prior, key=False)[0, 0]
    base = torch.logit(prior[0, 0].clamp(0.02, 0.98))
    changed = (logits - base).abs() > 1e-4
    rows, cols = changed.any(dim=1), changed.any(dim=0)
    # one 4 x 4 cell (ceil(3 / 4)) on each side of the edges, which lie on cell edges
    assert rows.nonzero().flatten().tolist() == [*range(12, 52)]
    assert cols.nonzero().flatten().tolist() == [*range(4, 44)]
    assert not changed[24:40, 16:32].any()  # deep inside


@pytest.mark.parametrize("light", [False, True])
def test_inference_decodes_p_frames_on_the_bands_window_with_the_same_numbers(
    light: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = tiny_net(pframe_band=3, **(LIGHT_P if light else {})).eval()
    torch.nn.init.normal_(net.pdec.out.weight, std=0.5)  # a correction that reads its whole field
    height, width = 96, 160
    feats, scores = torch.randn(2, 32, height // 8, width // 8), torch.randn(2, 2, 12, 20) * 10
    image, residual = torch.rand(1, 3, height, width), torch.rand(1, 3, height, width) * 2 - 1
    prior = torch.full((2, 1, height, width), 0.1)
    prior[0, :, 0:12, 0:15] = 0.9  # one object in the top left corner
    prior[1, :, 60:90, 140:160] = 0.9  # another in the bottom right one
    # the box grown by 3 + 32 pixels, on whole cells, inside the frame
    assert band_window(prior[0], 3, 8) == Window(top=0, bottom=48, left=0, right=56)
    assert band_window(prior[1], 3, 8) == Window(top=24, bottom=96, left=104, right=160)
    with torch.inference_mode():
        windowed = net.decode(feats, scores, image, residual, prior, key=False)
        whole_frame = lambda prior, radius, cell: Window(0, height, 0, width)  # noqa: E731
        monkeypatch.setattr(decoder_module, "band_window", whole_frame)
        whole = net.decode(feats, scores, image, residual, prior, key=False)
        base = torch.logit(prior.clamp(0.02, 0.98))
        assert (whole - base).abs().amax() > 0.1  # corrected within the band
        torch.testing.assert_close(windowed, whole, rtol=0, atol=1e-5)
        monkeypatch.undo()
        empty = torch.full_like(prior, 0.1)  # no foreground: no band, the prior as it is
        assert band_window(empty[0], 3, 8).empty
        logits = net.decode(feats, scores, image, residual, empty, key=False)
        assert torch.equal(logits, torch.logit(empty.clamp(0.02, 0.98)))
    assert band_window(torch.full((1, 90, 160), 0.9), 3, 8) == Window(0, 90, 0, 160)  # 90 rows


def test_cell_band_marks_cells_near_a_cell_that_holds_the_boundary() -> None:
    prior = torch.zeros(1, 1, 16, 24)
    prior[..., 5:16, 6:24] = 0.9  # edges inside cells (row 5, column 6), the rest on the border
    band = cell_band(prior, radius=4, cell=4)[0, 0]  # 4 x 6 cells, one cell of reach
    # cells 3-5 of the last row: their neighbours are all foreground (the border counts as neither)
    expected = torch.tensor(
        [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    )
    assert torch.equal(band, expected.float())


def test_p_frame_modules_pool_their_inputs_up_to_the_encoder_stride() -> None:
    assert tiny_net(**LIGHT_P).rsm.pool == tiny_net(**LIGHT_P).sam.pool == 2
    assert tiny_net().rsm.pool == 1
    with pytest.raises(ConfigError, match="stride 16 cannot reach the features' stride 8"):
        tiny_net(pframe_widths=(8, 16, 32, 64))


def test_decoder_widths_fine_path_from_half_or_quarter() -> None:
    for widths in ((24, 0, 16, 16, 8), (24, 8, 16, 16, 0), (0, 8, 16, 16, 8)):
        with pytest.raises(ConfigError, match="fine2 and fuse2"):
            DecoderWidths(*widths)


@pytest.mark.parametrize("band", [boundary_band, summed_area_band])
def test_the_band_equals_max_pool_dilation_minus_erosion_up_to_the_frame_border(band) -> None:
    """The compiled band (CPU) and the summed-area one (other devices), on whole maps and on
    windows of them (strided rows), NCHW and NHWC, radii small and wider than the map."""
    prior = (torch.rand(2, 1, 5, 9) > 0.5).float()
    prior = F.interpolate(prior, size=(40, 72)) * 0.9 + 0.05  # blocks touching the border
    for view in (
        prior,
        prior[..., 3:37, 8:64],
        prior.contiguous(memory_format=torch.channels_last),
    ):
        hard = (view > 0.5).float()
        for radius in (1, 6, 50):
            k = 2 * radius + 1
            pooled = F.max_pool2d(hard, k, 1, radius) + F.max_pool2d(-hard, k, 1, radius)
            assert pooled.sum() > 0
            torch.testing.assert_close(band(view, radius), pooled, rtol=0, atol=0)


def test_without_the_prior_the_decoder_is_a_matching_decoder() -> None:
    net = CVOSNet(build_encoder("tiny"), embed_dim=32, use_prior=False).eval()
    feats, scores, image, residual, prior = decoder_inputs(1)
    with torch.inference_mode():
        logits = net.decode(feats, scores, image, residual, prior, key=True)
        other = net.decode(feats, scores, image, residual, 1 - prior, key=True)
    assert torch.equal(logits, torch.zeros_like(logits)) and torch.equal(logits, other)


def test_reference_max_pools_masks_to_the_feature_grid() -> None:
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 9, 9] = 1  # one pixel makes cell (1, 1) of the 4 x 4 grid foreground
    ref: Reference = tiny_net().reference(torch.randn(1, 32, 4, 4), mask)
    assert ref.fg.count.tolist() == [[1]] and ref.bg.count.tolist() == [[15]]
    keys = F.normalize(torch.randn(1, 32, 4, 4), dim=1)
    ref = tiny_net().reference(keys, mask)
    torch.testing.assert_close(ref.fg.keys[0, 0, :, 0], keys[0, :, 1, 1])


def test_reference_mask_must_fit_the_feature_grid() -> None:
    with pytest.raises(DataError, match="60x64"):
        tiny_net().reference(torch.randn(1, 32, 8, 8), torch.zeros(1, 1, 60, 64))


# ---------------------------------------------------------------- matching helpers


def test_topk_mean_with_banks_smaller_than_k_and_empty() -> None:
    row = torch.tensor([0.9, 0.1, -0.3, 0.7])
    sim = row.view(1, 1, 4).expand(4, 2, 4)  # 4 samples, 2 targets, bank padded to 4
    count = torch.tensor([4, 3, 1, 0])
    means = topk_mean(sim, count, k=2)
    expected = torch.tensor([0.8, 0.5, 0.9, EMPTY_BANK_SCORE]).view(4, 1).expand(4, 2)
    torch.testing.assert_close(means, expected)
    torch.testing.assert_close(
        topk_mean(sim, count, k=20)[:, 0], torch.tensor([0.35, 0.7 / 3, 0.9, -1.0])
    )


def test_soft_aggregate_sums_to_one_and_keeps_the_ranking() -> None:
    fg = torch.tensor([[0.9, 0.05, 0.02], [0.3, 0.6, 0.01]]).view(1, 2, 3, 1)  # B x O x H x W
    probs = soft_aggregate(fg)
    assert probs.shape == (1, 3, 3, 1)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(1, 3, 1))
    assert probs.argmax(dim=1).flatten().tolist() == [1, 2, 0]
    one = soft_aggregate(torch.full((1, 1, 2, 2), 0.5))
    torch.testing.assert_close(one, torch.full((1, 2, 2, 2), 0.5))


# ---------------------------------------------------------------- inference paths


def overlapping_masks() -> Tensor:
    """1 x 4 x SIZE x SIZE: two objects that touch one cell, one inside another, one absent."""
    masks = torch.zeros(1, 4, SIZE, SIZE)
    masks[0, 0, :20, :20] = 1
    masks[0, 1, 18:40, 18:40] = 1  # shares the cell (2, 2) with object 0 after max-pooling
    masks[0, 2, 30:34, 30:34] = 1  # inside object 1
    return masks  # object 3 has no pixel: an empty foreground bank


@pytest.mark.parametrize(("k", "cap"), [(1, None), (3, None), (20, None), (3, 5), (20, 5)])
def test_shared_banks_score_like_per_object_banks(k: int, cap: int | None) -> None:
    net = tiny_net(topk=k).eval()
    masks = overlapping_masks()
    with torch.inference_mode():
        ref_feats = net.encode(torch.rand(1, 3, SIZE, SIZE))
        target = net.encode(torch.rand(1, 3, SIZE, SIZE))
        banks = shared_banks(ref_feats, masks, cap)
        reference = build_reference(ref_feats, masks, cap)
        expected = match(target, reference, k)  # 1 x 4 x 2 x 8 x 8
        torch.testing.assert_close(match_shared(target, banks, k), expected)
        per_object = torch.randn(4, 32, 8, 8)  # SAM: every object its own features
        alone = [match(f[None], reference, k)[0, o] for o, f in enumerate(per_object)]
        torch.testing.assert_close(match_shared(per_object, banks, k)[:, 0], torch.stack(alone))
    if cap is not None:
        assert max(banks.fg_counts + banks.bg_counts) == cap
        return
    assert banks.keys.shape == (32, 64)  # every reference cell stored once, not once per object
    # groups: background, {0}, {0, 1} (the shared cell), {1}, {1, 2}; object 3 owns none
    assert sorted(banks.fg_member) == [[False] * 4, *sorted(
        [[True, False, False, False], [True, True, False, False], [False, True, False, False],
         [False, True, True, False]])]  # fmt: skip
    assert all(
        bg == [not m for m in fg] for fg, bg in zip(banks.fg_member, banks.bg_member, strict=True)
    )


@pytest.mark.parametrize("cells", [5, 64, 150])
@pytest.mark.parametrize("device_type", ["cpu", "other"])
def test_topk_means_average_the_k_largest_of_the_ranges(cells: int, device_type: str) -> None:
    """Both implementations (compiled on the CPU, torch elsewhere) against a sort, on maps
    narrower than, equal to and between the compiled kernel's blocks of cells."""
    sim = torch.randn(40, cells)
    topk_means = {"cpu": matching_module.topk_means, "other": matching_module._torch_topk_means}
    topk_means = topk_means[device_type]
    for ranges, k in [([(3, 30)], 5), ([(0, 4), (10, 12)], 20), ([(0, 40)], 1), ([(7, 7)], 3)]:
        rows = torch.cat([sim[a:b] for a, b in ranges])  # n x cells
        if len(rows) == 0:
            expected = torch.full((cells,), EMPTY_BANK_SCORE)
        else:
            expected = rows.sort(dim=0, descending=True).values[:k].mean(dim=0)
        torch.testing.assert_close(topk_means(sim, ranges, k), expected)


def test_capped_banks_keep_evenly_spaced_members() -> None:
    member = torch.zeros(2, 100, dtype=torch.bool)
    member[0, 10:90] = True  # 80 members
    member[1, :3] = True  # fewer than the cap: all kept
    kept = capped(member, 5)
    assert kept[0].nonzero()[:, 0].tolist() == [10, 30, 50, 69, 89]
    assert torch.equal(kept[1], member[1]) and not (kept & ~member).any()


def test_shared_scores_equal_scores() -> None:
    net = tiny_net().eval()
    masks = overlapping_masks()
    with torch.inference_mode():
        feats = net.encode(torch.rand(1, 3, SIZE, SIZE))
        scores = net.scores(feats, net.reference(feats, masks[:, :2]))
        banks = [net.shared_banks(feats, masks[:, i : i + 1], None) for i in range(2)]
        torch.testing.assert_close(net.shared_scores(feats, banks), scores[0])


@pytest.mark.parametrize("light", [False, True])
def test_attention_for_several_objects_equals_attention_for_each(light: bool) -> None:
    """One frame's features and motion with O priors: the same as each object on its own."""
    net = tiny_net(**(LIGHT_P if light else {})).eval()
    feats = torch.randn(1, 32, 8, 8)
    mv = torch.randint(-6, 7, (1, 2, SIZE, SIZE)).float()
    priors = torch.rand(3, 1, SIZE, SIZE)
    residual = torch.rand(1, 3, SIZE, SIZE)
    with torch.inference_mode():
        together = net.propagate(feats, mv, residual, mv, priors)
        assert together.feats.shape == (3, 32, 8, 8)
        assert together.attention_coarse.shape == (3, 2, SIZE // 8, SIZE // 8)
        for o in range(3):
            alone = net.propagate(feats, mv, residual, mv, priors[o : o + 1])
            torch.testing.assert_close(together.feats[o : o + 1], alone.feats)
            inputs = torch.cat((mv / MOTION_SCALE, priors[o : o + 1]), dim=1)  # the paper's input
            logits = net.sam.head(net.sam.encoder(F.avg_pool2d(inputs, 2 if light else 1)))
            torch.testing.assert_close(alone.attention_coarse, logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(  # tiny: Sequential(conv, bn); resnet18: torchvision's convN / bnN
    "name", ["tiny", pytest.param("resnet18", marks=pytest.mark.slow)]
)
def test_folding_batch_norms_keeps_every_stage(name: str) -> None:
    net = CVOSNet(build_encoder(name), embed_dim=32).train()
    with torch.no_grad():  # give every batch norm statistics far from the identity
        for _ in range(3):
            key = net.encode(torch.rand(2, 3, 32, 48) * 3)
            mv = torch.randint(-4, 5, (2, 2, 32, 48)).float()
            net.propagate(key, mv, torch.rand(2, 3, 32, 48), mv, torch.rand(2, 1, 32, 48))
    net.eval()
    folded = fold_batch_norms(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.encoder.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.encoder.modules())  # a copy
    image = torch.rand(1, 3, 32, 48)
    mv, residual = torch.randint(-4, 5, (1, 2, 32, 48)).float(), torch.rand(1, 3, 32, 48)
    with torch.inference_mode():
        torch.testing.assert_close(folded.encode(image), net.encode(image), rtol=1e-4, atol=1e-4)
        key = net.encode(image)
        torch.testing.assert_close(
            folded.carry(key, mv, residual), net.carry(key, mv, residual), rtol=1e-4, atol=1e-4
        )
        priors = torch.rand(2, 1, 32, 48)
        torch.testing.assert_close(
            folded.propagate(key, mv, residual, mv, priors).feats,
            net.propagate(key, mv, residual, mv, priors).feats,
            rtol=1e-4, atol=1e-4,
        )  # fmt: skip


def test_initial_weights_are_those_of_0_3() -> None:
    """Modules are created in the order they were when the shipped model was trained, so a seed
    still gives the same initial weights and `make davis16` reproduces that training (sums taken
    with the 0.3 code)."""
    torch.manual_seed(0)
    config = NetConfig(
        variant="t", use_rsm=True, use_sam=True, embed_dim=32, encoder={"name": "tiny"}
    )
    params = dict(build_net(config).named_parameters())
    sums = {
        "idec.fuse4.0.weight": 0.9810971517731559,
        "idec.fuse2.0.weight": 2.4290756013699593,
        "pdec.fuse4.0.weight": -0.4457068985070691,
        "sam.head.weight": -1.4243325175193604,
        "rsm.fuse.2.weight": -4.292383701528365,
    }
    for name, expected in sums.items():
        assert params[name].double().sum().item() == pytest.approx(expected, abs=1e-12)
