"""Tiny datasets written into tmp_path in each official layout, for the data tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from cvos.data.synthetic import SyntheticSpec, render_video
from cvos.masks import write_label_png

Video = tuple[np.ndarray, np.ndarray]  # T x H x W x 3 uint8 RGB frames, T x H x W uint8 labels

MaskWriter = Callable[[Path, np.ndarray], None]


def tiny_videos(
    count: int, *, frames: int = 10, height: int = 40, width: int = 72, seed: int = 0
) -> dict[str, Video]:
    """`count` synthetic videos named seq-0, seq-1, ... (sizes not multiples of 16)."""
    spec = SyntheticSpec(min_frames=frames, max_frames=frames, height=height, width=width)
    return {f"seq-{i}": render_video(np.random.default_rng([seed, i]), spec) for i in range(count)}


def _write_frames(folder: Path, frames: np.ndarray, names: list[str]) -> None:
    folder.mkdir(parents=True)
    for frame, name in zip(frames, names, strict=True):
        Image.fromarray(frame).save(folder / f"{name}.jpg", quality=95)


def _write_davis_videos(root: Path, videos: dict[str, Video], write_mask: MaskWriter) -> None:
    """Frames and one mask per frame in the DAVIS folders (`480p`, names 00000, 00001, ...)."""
    for name, (frames, labels) in videos.items():
        names = [f"{t:05d}" for t in range(len(frames))]
        _write_frames(root / "JPEGImages" / "480p" / name, frames, names)
        masks = root / "Annotations" / "480p" / name
        masks.mkdir(parents=True)
        for label, frame_name in zip(labels, names, strict=True):
            write_mask(masks / f"{frame_name}.png", label)


def _write_binary_mask(path: Path, labels: np.ndarray) -> None:
    Image.fromarray(np.where(labels > 0, 255, 0).astype(np.uint8)).save(path)


def write_davis2016(root: Path, videos: dict[str, Video], splits: dict[str, list[str]]) -> Path:
    """DAVIS 2016: 0/255 masks on every frame; split lines `/JPEGImages/... /Annotations/... `."""
    _write_davis_videos(root, videos, _write_binary_mask)
    (root / "ImageSets" / "480p").mkdir(parents=True)
    for split, names in splits.items():
        lines = [
            # with the trailing space the official files have
            f"/JPEGImages/480p/{name}/{t:05d}.jpg /Annotations/480p/{name}/{t:05d}.png "
            for name in names
            for t in range(len(videos[name][0]))
        ]
        (root / "ImageSets" / "480p" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_davis2017(root: Path, videos: dict[str, Video], splits: dict[str, list[str]]) -> Path:
    """DAVIS 2017: palette masks with object ids on every frame; one sequence name a split line."""
    _write_davis_videos(root, videos, write_label_png)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    for split, names in splits.items():
        (root / "ImageSets" / "2017" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def write_ytvos(
    root: Path,
    split: str,
    videos: dict[str, Video],
    *,
    name_step: int = 5,
    mask_every: int = 1,
    late_object: bool = True,
) -> Path:
    """YouTube-VOS: frames named 00000, 00005, ... (`name_step`: not contiguous); `train` has a
    mask on every `mask_every`-th frame, `valid` only on each object's first frame. With
    `late_object`, the highest object id is hidden in the first half, so it appears late.
    """
    meta: dict[str, dict] = {"videos": {}}
    for name, (frames, labels) in videos.items():
        labels = labels.copy()
        half = len(frames) // 2
        if late_object and labels.max() > 1:
            labels[:half][labels[:half] == labels.max()] = 0
        names = [f"{t * name_step:05d}" for t in range(len(frames))]
        annotated = names[::mask_every]
        _write_frames(root / split / "JPEGImages" / name, frames, names)
        masks = root / split / "Annotations" / name
        masks.mkdir(parents=True)
        objects = {}
        for object_id in range(1, int(labels.max()) + 1):
            seen = [
                n
                for n, label in zip(names, labels, strict=True)
                if n in annotated and (label == object_id).any()
            ]
            objects[str(object_id)] = {"category": "blob", "frames": seen}
        for frame_name, label in zip(names, labels, strict=True):
            starting = [int(i) for i, obj in objects.items() if obj["frames"][:1] == [frame_name]]
            if split == "train" and frame_name in annotated:
                write_label_png(masks / f"{frame_name}.png", label)
            elif split != "train" and starting:
                write_label_png(
                    masks / f"{frame_name}.png",
                    np.where(np.isin(label, starting), label, 0).astype(np.uint8),
                )
        meta["videos"][name] = {"objects": objects}
    (root / split / "meta.json").write_text(json.dumps(meta))
    return root
