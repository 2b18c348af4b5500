"""DAVIS J and F: hand-computed cases, a brute-force reference, the protocol, the Metric and CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvos.errors import DataError
from cvos.metrics import (
    COLUMNS,
    DavisJF,
    boundary_f_measure,
    boundary_map,
    boundary_radius,
    evaluate_folders,
    evaluate_sequence,
    read_label_dir,
    read_label_png,
    region_similarity,
    report,
    summarize,
)

REPO = Path(__file__).resolve().parents[1]


def box(shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """H x W bool mask, true on rows[0]:rows[1] x cols[0]:cols[1]."""
    mask = np.zeros(shape, dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


# ---------------------------------------------------------------- brute-force reference


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """The toolkit's boundary rule, pixel by pixel: differs from right / below / below-right.

    Neighbours outside the image read as background, except that the last row only compares
    with its right neighbour, the last column only with the pixel below, and the bottom-right
    pixel is never a boundary.
    """
    h, w = mask.shape

    def at(y: int, x: int) -> bool:
        return bool(mask[y, x]) if y < h and x < w else False

    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                out[y, x] = at(y, x) != at(y, x + 1)
            elif x == w - 1:
                out[y, x] = at(y, x) != at(y + 1, x)
            else:
                neighbours = (at(y, x + 1), at(y + 1, x), at(y + 1, x + 1))
                out[y, x] = any(at(y, x) != n for n in neighbours)
    return out


def reference_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """F with matching by explicit pairwise distances between boundary pixels."""
    h, w = gt.shape
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.sqrt(h * h + w * w))
    pred_pts = np.argwhere(reference_boundary(pred))
    gt_pts = np.argwhere(reference_boundary(gt))
    if len(pred_pts) == 0 and len(gt_pts) == 0:
        return 1.0
    if len(pred_pts) == 0 or len(gt_pts) == 0:
        return 0.0
    sq_dist = ((pred_pts[:, None, :] - gt_pts[None, :, :]) ** 2).sum(-1)  # P x G
    close = sq_dist <= radius * radius
    precision = close.any(axis=1).mean()
    recall = close.any(axis=0).mean()
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def reference_decay(scores: np.ndarray) -> float:
    """Decay with the toolkit's cut points, computed in floating point as it does."""
    n = len(scores)
    cuts = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(int)
    return scores[cuts[0] : cuts[1] + 1].mean() - scores[cuts[3] : cuts[4] + 1].mean()


def random_blobs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Blobby random mask: thresholded box-filtered noise (objects, holes, border contact)."""
    noise = rng.random((shape[0] + 4, shape[1] + 4))
    smooth = sum(
        noise[dy : dy + shape[0], dx : dx + shape[1]] for dy in range(5) for dx in range(5)
    )
    return smooth > rng.uniform(11.0, 14.0)


# ---------------------------------------------------------------- J


def test_j_hand_cases() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    square = box((10, 10), (2, 6), (2, 6))  # 16 pixels
    assert region_similarity(empty, empty) == 1.0
    assert region_similarity(square, square) == 1.0
    assert region_similarity(empty, square) == 0.0
    assert region_similarity(square, box((10, 10), (7, 9), (7, 9))) == 0.0  # disjoint
    # One-pixel shift right: 12 shared pixels, 20 in the union.
    assert region_similarity(box((10, 10), (2, 6), (3, 7)), square) == pytest.approx(12 / 20)
    # Label maps work too: any non-zero pixel is foreground.
    assert region_similarity(square * np.uint8(255), square.astype(np.uint8)) == 1.0


# ---------------------------------------------------------------- boundaries


def test_boundary_of_a_square_is_the_ring_around_its_top_left() -> None:
    # A 3x3 square on rows/cols 2..4: its boundary is the 12-pixel perimeter of rows/cols 1..4
    # (background above and left of the object, object pixels on its right and bottom edges).
    edges = boundary_map(box((7, 7), (2, 5), (2, 5)))
    expected = box((7, 7), (1, 5), (1, 5)) & ~box((7, 7), (2, 4), (2, 4))
    np.testing.assert_array_equal(edges, expected)
    assert edges.sum() == 12


def test_boundary_at_the_image_border() -> None:
    # Filling the whole frame leaves no boundary: the image border is not an object edge.
    assert not boundary_map(np.ones((6, 8), dtype=bool)).any()
    # The left half's boundary is its inner column only (all rows, none along the border).
    np.testing.assert_array_equal(
        boundary_map(box((6, 8), (0, 6), (0, 4))), box((6, 8), (0, 6), (3, 4))
    )
    # A single pixel in the bottom-right corner: its three up-left neighbours, not itself.
    corner = np.zeros((5, 5), dtype=bool)
    corner[4, 4] = True
    np.testing.assert_array_equal(np.argwhere(boundary_map(corner)), [[3, 3], [3, 4], [4, 3]])


def test_boundary_matches_pixel_reference_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = random_blobs(rng, (int(rng.integers(1, 25)), int(rng.integers(1, 25))))
        np.testing.assert_array_equal(boundary_map(mask), reference_boundary(mask))


def test_radius_is_ceil_of_fraction_of_diagonal() -> None:
    assert boundary_radius(480, 854) == 8  # ceil(0.008 * 979.6): DAVIS 480p
    assert boundary_radius(10, 12) == 1
    assert boundary_radius(10, 12, bound_th=3) == 3  # >= 1 means pixels
    with pytest.raises(ValueError, match="whole"):
        boundary_radius(10, 12, bound_th=2.5)


# ---------------------------------------------------------------- F


def test_f_conventions_for_empty_boundaries() -> None:
    empty = np.zeros((10, 12), dtype=bool)
    square = box((10, 12), (3, 6), (2, 5))
    assert boundary_f_measure(empty, empty) == 1.0
    assert boundary_f_measure(empty, square) == 0.0  # recall 0
    assert boundary_f_measure(square, empty) == 0.0  # precision 0
    # A full-frame annotation has no boundary, so an empty prediction scores F = 1 (J = 0).
    full = np.ones((10, 12), dtype=bool)
    assert boundary_f_measure(empty, full) == 1.0
    assert region_similarity(empty, full) == 0.0


def test_f_shifts_against_the_tolerance() -> None:
    # 10 x 12 frame: tolerance ceil(0.008 * 15.6) = 1 pixel.
    gt = box((10, 12), (3, 6), (2, 5))
    assert boundary_f_measure(gt, gt) == 1.0
    assert boundary_f_measure(box((10, 12), (3, 6), (3, 6)), gt) == 1.0  # 1 px: all match
    # 2 px right: 8 of the 12 perimeter pixels lie within 1 px of the other perimeter, both
    # ways, so P = R = F = 2/3; a 2 px tolerance matches everything.
    shifted = box((10, 12), (3, 6), (4, 7))
    assert boundary_f_measure(shifted, gt) == pytest.approx(2 / 3)
    assert boundary_f_measure(shifted, gt, bound_th=2) == 1.0
    disjoint = box((10, 12), (0, 2), (9, 12))
    assert boundary_f_measure(disjoint, gt) == 0.0  # P = R = 0


def test_f_masks_touching_the_border() -> None:
    gt = box((10, 12), (0, 10), (0, 5))  # left part, boundary = column 4
    assert boundary_f_measure(box((10, 12), (0, 10), (0, 6)), gt) == 1.0  # column 5: 1 px
    assert boundary_f_measure(box((10, 12), (0, 10), (0, 7)), gt) == 0.0  # column 6: 2 px
    assert region_similarity(box((10, 12), (0, 10), (0, 7)), gt) == pytest.approx(5 / 7)


def test_f_matches_brute_force_reference_on_random_masks() -> None:
    rng = np.random.default_rng(1)
    for i in range(40):
        shape = (int(rng.integers(2, 40)), int(rng.integers(2, 40)))
        pred, gt = random_blobs(rng, shape), random_blobs(rng, shape)
        bound_th = [0.008, 0.05, 0.1, 2][i % 4]
        assert boundary_f_measure(pred, gt, bound_th) == pytest.approx(
            reference_f(pred, gt, bound_th), abs=1e-12
        )


# ---------------------------------------------------------------- mean, recall, decay


def test_summarize_hand_cases() -> None:
    mean, recall, decay = summarize(np.array([1, 1, 1, 1, 0, 0, 0, 0.0]))
    assert (mean, recall, decay) == (0.5, 0.5, 1.0)
    # Recall counts frames strictly above 0.5.
    assert summarize(np.array([0.5, 0.51, 0.2, 0.9]))[1] == 0.5
    # Five frames: the toolkit's bins share their end frames, first = [0.2, 0.4] and
    # last = [0.8, 1.0] (not [0.2, 0.4] and [1.0] as a plain four-way split would give).
    assert summarize(np.array([0.2, 0.4, 0.6, 0.8, 1.0]))[2] == pytest.approx(0.3 - 0.9)
    assert summarize(np.array([0.7])) == (0.7, 1.0, 0.0)
    with pytest.raises(ValueError):
        summarize(np.array([]))


def test_decay_bins_match_the_float_formula_for_every_length() -> None:
    rng = np.random.default_rng(2)
    for n in range(1, 300):
        scores = rng.random(n)
        assert summarize(scores)[2] == pytest.approx(reference_decay(scores), abs=1e-12), n


# ---------------------------------------------------------------- sequences and report


def two_object_sequence() -> tuple[np.ndarray, np.ndarray]:
    """5 frames of 20 x 24: object 1 predicted perfectly, object 2 missing from the prediction
    except in the unscored first and last frames; a stray id 7 and a void band are ignored."""
    gt = np.zeros((5, 20, 24), dtype=np.uint8)
    gt[:, 2:8, 2:8] = 1
    gt[:, 10:16, 12:20] = 2
    gt[:, 18, :] = 255
    pred = np.where(gt == 255, 0, gt)
    pred[1:-1][pred[1:-1] == 2] = 0
    pred[:, 0:2, 20:24] = 7
    return gt, pred


def test_evaluate_sequence_drops_first_and_last_frame_and_missing_objects_are_empty() -> None:
    gt, pred = two_object_sequence()
    scores = evaluate_sequence("seq", gt, pred)
    assert scores.object_ids == [1, 2]
    np.testing.assert_array_equal(scores.j, [[1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(scores.f, [[1, 1, 1], [0, 0, 0]])
    # Ids 1..max of the first frame count, even if one is absent there (toolkit behaviour).
    gt[0][gt[0] == 1] = 0
    assert evaluate_sequence("seq", gt, pred).j.shape == (2, 3)


def test_evaluate_sequence_rejects_bad_input_by_name() -> None:
    gt, pred = two_object_sequence()
    with pytest.raises(DataError, match="'seq'.*shape"):
        evaluate_sequence("seq", gt, pred[:, :10])
    with pytest.raises(DataError, match="'seq' has 2 frames"):
        evaluate_sequence("seq", gt[:2], pred[:2])
    with pytest.raises(DataError, match="no object"):
        evaluate_sequence("seq", np.zeros_like(gt), pred)


def test_report_averages_objects_globally_and_per_sequence() -> None:
    gt, pred = two_object_sequence()  # object means J: 1 and 0
    one = (gt == 1).astype(np.uint8)
    single = evaluate_sequence("b", one, one)  # one object, J = F = 1
    result = report([evaluate_sequence("a", gt, pred), single])
    assert result.per_sequence["a"]["J-Mean"] == 0.5
    assert result.per_sequence["b"]["J-Mean"] == 1.0
    assert result.global_["J-Mean"] == pytest.approx(2 / 3)  # 3 objects, not 2 sequences
    assert result.global_["J&F-Mean"] == pytest.approx(2 / 3)
    assert list(result.global_) == COLUMNS
    lines = result.format_table().splitlines()
    assert lines[0].split() == ["Sequence", *COLUMNS]
    assert lines[1].split() == ["Global", "0.667", "0.667", "0.667", "0.000"] + ["0.667"] * 2 + [
        "0.000"
    ]
    assert [line.split()[0] for line in lines[2:]] == ["a", "b"]
    assert json.loads(result.to_json())["per_sequence"]["b"]["F-Recall"] == 1.0
    with pytest.raises(DataError, match="more than once"):
        report([single, single])


# ---------------------------------------------------------------- torchmetrics


def test_davis_metric_matches_report() -> None:
    gt, pred = two_object_sequence()
    metric = DavisJF()
    metric.update(torch.from_numpy(pred), torch.from_numpy(gt))
    one = (gt == 1).astype(np.uint8)
    metric.update(one, one)
    expected = report([evaluate_sequence("a", gt, pred), evaluate_sequence("b", one, one)])
    values = metric.compute()
    assert list(values) == COLUMNS
    for column in COLUMNS:
        assert values[column].item() == pytest.approx(expected.global_[column], abs=1e-12)


def test_davis_metric_sync_concatenates_objects_of_all_processes() -> None:
    """Fake a two-process world: the other rank scored one perfect single-object sequence."""
    gt, pred = two_object_sequence()
    other = DavisJF()
    one = (gt == 1).astype(np.uint8)
    other.update(one, one)
    other_stats = other.object_stats[0]

    def gather(tensor: torch.Tensor, group: object = None) -> list[torch.Tensor]:
        return [tensor, other_stats]

    metric = DavisJF(dist_sync_fn=gather, distributed_available_fn=lambda: True)
    metric.update(pred, gt)
    # Objects (1, 0, 1) averaged once each, not the two processes' means (0.5 and 1).
    assert metric.compute()["J-Mean"].item() == pytest.approx(2 / 3, abs=1e-12)


# ---------------------------------------------------------------- folders and CLI


def write_png(path: Path, labels: np.ndarray, palette: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:
        image = Image.fromarray(labels.astype(np.uint8), mode="P")
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [128] * 759)
    else:
        image = Image.fromarray((labels > 0).astype(np.uint8) * 255, mode="L")
    image.save(path)


def make_folders(root: Path) -> tuple[Path, Path]:
    """Two 6-frame sequences: 0/255 grayscale annotations, palette predictions shifted 1 px."""
    gt_root, pred_root = root / "gt", root / "pred"
    for name, top in (("alpha", 4), ("beta", 10)):
        for t in range(6):
            mask = box((24, 32), (top, top + 8), (4 + t, 14 + t)).astype(np.uint8)
            write_png(gt_root / name / f"{t:05d}.png", mask, palette=False)
            write_png(pred_root / name / f"{t:05d}.png", np.roll(mask, 1, axis=1), palette=True)
    return gt_root, pred_root


def test_read_label_png_modes(tmp_path: Path) -> None:
    labels = np.array([[0, 1, 2], [255, 0, 1]], dtype=np.uint8)
    write_png(tmp_path / "p.png", labels, palette=True)
    write_png(tmp_path / "l.png", labels, palette=False)
    np.testing.assert_array_equal(read_label_png(tmp_path / "p.png"), labels)
    np.testing.assert_array_equal(read_label_png(tmp_path / "l.png"), labels > 0)
    colour = np.zeros((2, 3, 3), dtype=np.uint8)
    colour[..., 1] = 9
    Image.fromarray(colour).save(tmp_path / "c.png")
    with pytest.raises(DataError, match=r"c\.png: unsupported RGB"):
        read_label_png(tmp_path / "c.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png: not a readable"):
        read_label_png(tmp_path / "bad.png")


def test_evaluate_folders_matches_in_memory_scores(tmp_path: Path) -> None:
    gt_root, pred_root = make_folders(tmp_path)
    frames, gt = read_label_dir(gt_root / "alpha")
    assert frames == [f"{t:05d}" for t in range(6)] and gt.shape == (6, 24, 32)
    result = evaluate_folders(gt_root, pred_root)
    expected = evaluate_sequence("alpha", gt, np.roll(gt, 1, axis=2))
    assert result.per_sequence["alpha"]["J-Mean"] == pytest.approx(expected.j.mean())
    assert result.per_sequence["alpha"]["J-Mean"] == pytest.approx(72 / 88)  # 8x9 of 8x11
    assert list(result.per_sequence) == ["alpha", "beta"]
    # The unscored first and last predictions may be absent; the others may not.
    (pred_root / "alpha" / "00000.png").unlink()
    (pred_root / "alpha" / "00005.png").unlink()
    assert evaluate_folders(gt_root, pred_root).global_ == result.global_
    (pred_root / "alpha" / "00002.png").unlink()
    with pytest.raises(DataError, match=r"alpha/00002\.png: predicted mask missing"):
        evaluate_folders(gt_root, pred_root)
    assert evaluate_folders(gt_root, pred_root, ["beta"]).per_sequence.keys() == {"beta"}


def test_evaluate_folders_errors_name_the_problem(tmp_path: Path) -> None:
    gt_root, pred_root = make_folders(tmp_path)
    write_png(pred_root / "beta" / "00003.png", np.zeros((24, 30)), palette=True)
    with pytest.raises(DataError, match=r"beta/00003\.png: mask is 30x24 .* is 32x24"):
        evaluate_folders(gt_root, pred_root)
    (pred_root / "beta").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"pred/beta: prediction folder"):
        evaluate_folders(gt_root, pred_root)
    with pytest.raises(DataError, match="no annotations for sequence"):
        evaluate_folders(gt_root, pred_root, ["gamma"])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CVOS_DEBUG", None)
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "cvos.metrics", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cli_prints_table_and_writes_json(tmp_path: Path) -> None:
    gt_root, pred_root = make_folders(tmp_path)
    out = tmp_path / "out" / "scores.json"
    done = run_cli("--gt", str(gt_root), "--pred", str(pred_root), "--json", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["Sequence", *COLUMNS]
    assert [line.split()[0] for line in lines[1:]] == ["Global", "alpha", "beta"]
    saved = json.loads(out.read_text())
    assert set(saved) == {"global", "per_sequence"} and list(saved["global"]) == COLUMNS
    assert lines[2].split()[2] == f"{saved['per_sequence']['alpha']['J-Mean']:.3f}" == "0.818"


def test_cli_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    gt_root, pred_root = make_folders(tmp_path)
    (pred_root / "beta" / "00004.png").unlink()
    done = run_cli("--gt", str(gt_root), "--pred", str(pred_root))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and "beta/00004.png" in done.stderr


# ---------------------------------------------------------------- real DAVIS 2016 (optional)


def davis_root() -> Path:
    return Path(os.environ.get("CVOS_DAVIS2016", REPO.parent / "shared" / "data" / "davis2016"))


def test_real_davis_frames_against_reference() -> None:
    annotations = davis_root() / "Annotations" / "480p"
    if not annotations.is_dir():
        pytest.skip(f"DAVIS 2016 not found at {davis_root()} (set CVOS_DAVIS2016)")
    sequence = sorted(p for p in annotations.iterdir() if p.is_dir())[0]
    _, gt = read_label_dir(sequence)  # T x 480 x 854
    pred, target = gt[0].astype(bool), gt[-1].astype(bool)  # far-apart frames: partial overlap
    radius = boundary_radius(*target.shape)
    # Reference dilation by shifting the boundary to every disk offset (exact, independent).
    pred_edges, gt_edges = boundary_map(pred), boundary_map(target)
    near_gt = np.zeros_like(gt_edges)
    near_pred = np.zeros_like(pred_edges)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                near_gt |= shift(gt_edges, dy, dx)
                near_pred |= shift(pred_edges, dy, dx)
    precision = (pred_edges & near_gt).sum() / pred_edges.sum()
    recall = (gt_edges & near_pred).sum() / gt_edges.sum()
    expected = 2 * precision * recall / (precision + recall)
    assert 0 < expected < 1
    assert boundary_f_measure(pred, target) == pytest.approx(expected, abs=1e-12)


def shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Mask moved by (dy, dx) with zeros shifted in (no wrap-around)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out
