"""A small synthetic video dataset, deterministic from a seed, in the DAVIS 2017 layout.

Textured blobs translate, scale and rotate over a panning textured background and occlude one
another. Textures are procedural functions of each surface's own coordinates, so they move
rigidly with it and the codec finds real motion vectors. It is the default dataset: generated
on first use in seconds, small enough for CPU training runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cvos.masks import write_label_png

log = logging.getLogger(__name__)

GENERATOR_VERSION = 3
RESOLUTION = "480p"  # the DAVIS folder name; the frames themselves are `height` x `width`
LATTICE = 64  # texture lattice points per side; a texture repeats every LATTICE cells


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; every field goes into the cache key, so changing one regenerates."""

    seed: int = 0
    num_train: int = 24
    num_val: int = 6
    min_frames: int = 24
    max_frames: int = 36
    height: int = 120  # not a multiple of 16 on purpose: exercises the codec's padding
    width: int = 200
    max_objects: int = 3

    def key(self) -> str:
        """Folder name that changes with the spec and the generator version."""
        text = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return f"v{GENERATOR_VERSION}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


@dataclass
class Surface:
    """A procedural texture: value noise (random colours on a lattice, interpolated) at two scales.

    Smooth and non-periodic at the frame's scale, so the encoder's block matching finds the
    true motion (on stripes or checkerboards it locks onto the wrong period).
    """

    coarse: np.ndarray  # L x L x 3 colours, one every `coarse_cell` pixels
    fine: np.ndarray  # L x L x 3 colour offsets, one every `fine_cell` pixels
    coarse_cell: float
    fine_cell: float

    def colour(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Colour at surface coordinates x, y (each N): N x 3 float in 0..255 (unclipped)."""
        coarse = _value_noise(self.coarse, x / self.coarse_cell, y / self.coarse_cell)
        return coarse + _value_noise(self.fine, x / self.fine_cell, y / self.fine_cell)


def _value_noise(lattice: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A repeating L x L x C lattice, bilinearly interpolated at lattice coordinates u, v: N x C."""
    size = lattice.shape[0]
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = (u - u0)[:, None], (v - v0)[:, None]
    i0, j0 = u0.astype(np.int64) % size, v0.astype(np.int64) % size
    i1, j1 = (i0 + 1) % size, (j0 + 1) % size
    top = lattice[j0, i0] * (1 - fu) + lattice[j0, i1] * fu
    bottom = lattice[j1, i0] * (1 - fu) + lattice[j1, i1] * fu
    return top * (1 - fv) + bottom * fv


@dataclass
class Blob:
    """One object: a star-shaped outline with a texture, and its pose at every frame."""

    surface: Surface
    radius: float
    harmonics: np.ndarray  # H x 3: (order, amplitude, phase) of the outline's radial wobble
    centres: np.ndarray  # T x 2 (x, y)
    angles: np.ndarray  # T radians
    scales: np.ndarray  # T

    def inside(
        self, x: np.ndarray, y: np.ndarray, t: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which pixels (x, y: N) the blob covers at frame t, and their object coordinates."""
        cos, sin = np.cos(self.angles[t]), np.sin(self.angles[t])
        dx, dy = x - self.centres[t, 0], y - self.centres[t, 1]
        u = (cos * dx + sin * dy) / self.scales[t]
        v = (-sin * dx + cos * dy) / self.scales[t]
        theta = np.arctan2(v, u)
        order, amplitude, phase = self.harmonics.T
        outline = self.radius * (
            1 + (amplitude * np.cos(np.outer(theta, order) + phase)).sum(axis=1)
        )
        return np.hypot(u, v) < outline, u, v


def _surface(rng: np.random.Generator) -> Surface:
    """A texture with its own mean colour, so objects differ from the background and each other."""
    base = rng.uniform(60, 195, 3)
    return Surface(
        coarse=base + rng.normal(0.0, 45.0, (LATTICE, LATTICE, 3)),
        fine=rng.normal(0.0, 20.0, (LATTICE, LATTICE, 3)),
        coarse_cell=float(rng.uniform(10, 16)),
        fine_cell=float(rng.uniform(3, 5)),
    )


def _trajectory(
    rng: np.random.Generator, frames: int, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """T x 2 positions moving at constant speed and bouncing off the box [low, high]."""
    position = rng.uniform(low, high)
    heading = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(0.75, 2.0) * np.array([np.cos(heading), np.sin(heading)])
    centres = np.empty((frames, 2))
    for t in range(frames):
        centres[t] = position
        position = position + velocity
        bounce = (position < low) | (position > high)
        velocity[bounce] *= -1
        position = np.clip(position, low, high)
    return centres


def _blob(rng: np.random.Generator, frames: int, height: int, width: int) -> Blob:
    radius = float(rng.uniform(0.12, 0.22) * min(height, width))
    ts = np.arange(frames)
    margin = np.array([radius * 0.5, radius * 0.5])
    wobble = [rng.integers(2, 5, 3), rng.uniform(0.0, 0.2, 3), rng.uniform(0, 2 * np.pi, 3)]
    pulse = np.sin(rng.uniform(0.05, 0.2) * ts + rng.uniform(0, 2 * np.pi))  # T, for the scale
    return Blob(
        surface=_surface(rng),
        radius=radius,
        harmonics=np.stack(wobble, axis=1),
        centres=_trajectory(rng, frames, margin, np.array([width, height]) - margin),
        angles=rng.uniform(0, 2 * np.pi) + rng.uniform(-0.03, 0.03) * ts,
        scales=1.0 + rng.uniform(0.05, 0.25) * pulse,
    )


@dataclass
class Scene:
    """Everything that moves in one video."""

    background: Surface
    pan: np.ndarray  # T x 2 camera offset (x, y)
    blobs: list[Blob]  # blob i has label i + 1
    depth_order: np.ndarray  # blob indices, farthest first


def _scene(rng: np.random.Generator, frames: int, spec: SyntheticSpec) -> Scene:
    count = int(rng.integers(1, spec.max_objects + 1))
    return Scene(
        background=_surface(rng),
        pan=rng.uniform(-1.0, 1.0, 2) * np.arange(frames)[:, None],
        blobs=[_blob(rng, frames, spec.height, spec.width) for _ in range(count)],
        depth_order=rng.permutation(count),
    )


def _draw(scene: Scene, frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """T x H*W x 3 float colours and T x H*W uint8 labels, objects drawn back to front."""
    ys, xs = np.mgrid[0:height, 0:width].reshape(2, -1).astype(np.float64)  # each H*W
    images = np.empty((frames, height * width, 3), np.float64)
    labels = np.zeros((frames, height * width), np.uint8)
    for t in range(frames):
        images[t] = scene.background.colour(xs + scene.pan[t, 0], ys + scene.pan[t, 1])
        for index in scene.depth_order:
            inside, u, v = scene.blobs[index].inside(xs, ys, t)
            images[t, inside] = scene.blobs[index].surface.colour(u[inside], v[inside])
            labels[t, inside] = index + 1
    return images, labels


def render_video(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """One video: T x H x W x 3 uint8 RGB frames and T x H x W uint8 label maps (ids 1..n).

    Objects occlude each other in a random depth order; the scene is drawn again until every
    object shows at least 1% of the frame on the first frame (its mask there starts it).
    """
    frames = int(rng.integers(spec.min_frames, spec.max_frames + 1))
    h, w = spec.height, spec.width
    while True:
        scene = _scene(rng, frames, spec)
        images, labels = _draw(scene, frames, h, w)
        visible = np.bincount(labels[0], minlength=len(scene.blobs) + 1)[1:]
        if visible.min() >= 0.01 * h * w:
            break
    rgb = np.clip(images, 0, 255).round().astype(np.uint8).reshape(frames, h, w, 3)
    return rgb, labels.reshape(frames, h, w)


def _write_video(root: Path, name: str, frames: np.ndarray, labels: np.ndarray) -> None:
    frames_dir = root / "JPEGImages" / RESOLUTION / name
    masks_dir = root / "Annotations" / RESOLUTION / name
    frames_dir.mkdir(parents=True)
    masks_dir.mkdir(parents=True)
    for t, (frame, label) in enumerate(zip(frames, labels, strict=True)):
        Image.fromarray(frame).save(frames_dir / f"{t:05d}.jpg", quality=90)
        write_label_png(masks_dir / f"{t:05d}.png", label)


def generate_synthetic(root: Path, spec: SyntheticSpec) -> None:
    """Write the dataset into `root` (a new folder) with `ImageSets/2017/{train,val}.txt`."""
    splits = {"train": spec.num_train, "val": spec.num_val}
    (root / "ImageSets" / "2017").mkdir(parents=True)
    video_index = 0
    for split, count in splits.items():
        names = []
        for number in range(count):
            name = f"{split}-{number:03d}"
            frames, labels = render_video(np.random.default_rng([spec.seed, video_index]), spec)
            _write_video(root, name, frames, labels)
            names.append(name)
            video_index += 1
        (root / "ImageSets" / "2017" / f"{split}.txt").write_text("\n".join(names) + "\n")


def ensure_synthetic(cache_dir: Path, spec: SyntheticSpec) -> Path:
    """The dataset folder of `spec` in `cache_dir/synthetic/`, generated atomically if absent."""
    root = cache_dir / "synthetic" / spec.key()
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    log.info("generating the synthetic dataset into %s", root)
    partial = root.parent / f".{root.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        generate_synthetic(partial, spec)
        os.replace(partial, root)
    except OSError:
        if not root.is_dir():  # another process finishing first is fine; anything else is not
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root
