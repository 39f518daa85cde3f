"""Built-in synthetic video dataset: bouncing coloured shapes on textured backgrounds (no download).

The default dataset for the demo, the tests and the benchmarks, and the training set of the small 3D-CNN
classifier used as a cheap stand-in for the C3D score (reference.md §5 describes the real protocol).

Nine classes, ``label = 3 · shape + motion``:
  * shape: 0 square, 1 circle, 2 triangle (pointing up); similar areas, drawn with 1-pixel antialiased edges;
  * motion: 0 horizontal bounce, 1 vertical bounce, 2 circular orbit around the frame centre.
Item ``i`` has label ``i % 9`` (balanced classes); ``clips_per_class=N`` keeps the first N items of each
class, i.e. items ``0 .. 9·N − 1`` whatever ``n_clips`` says (the memory-capacity experiment, paper §5.5).
Everything else is drawn from a generator seeded with
``(seed, split, i)``: the background (a smooth two-colour gradient plus faint sinusoidal stripes, dark and
desaturated), the object's colour (bright, saturated), size, start position, direction and speed. Speeds
are in pixels per frame relative to the resolution, so any ``n_frames`` and ``size`` work and the same item
looks alike at 32 and 64 px. Clips are generated on request, vectorised in NumPy (~1 ms for 16×64×64), and
are the same in every epoch and for every worker. ``train=False`` draws from a disjoint stream.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch
from torch import Tensor

from .base import VideoDataset

__all__ = ["SyntheticVideoDataset", "SHAPES", "MOTIONS", "CLASS_NAMES", "render_clip"]

SHAPES = ("square", "circle", "triangle")
MOTIONS = ("horizontal", "vertical", "circular")
CLASS_NAMES = [f"{shape}-{motion}" for shape in SHAPES for motion in MOTIONS]

# Outward unit normals of an upward-pointing equilateral triangle (image y axis points down).
_TRIANGLE_NORMALS = np.array([[0.0, 1.0], [-math.sqrt(3) / 2, -0.5], [math.sqrt(3) / 2, -0.5]], np.float32)
# Half the bounding-box side of each shape in units of r (square 0.89, circle 1, triangle circumradius 1.56).
_HALF_EXTENT = (0.89, 1.0, 1.56)


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), np.float32)


def _bounce(start: float, velocity: float, low: float, high: float, n_frames: int) -> np.ndarray:
    """Positions of a point moving at ``velocity`` px/frame and reflecting off ``low`` and ``high``."""
    span = high - low
    travelled = (start - low) + velocity * np.arange(n_frames, dtype=np.float32)
    folded = np.mod(travelled, 2 * span)
    return low + np.where(folded <= span, folded, 2 * span - folded)


def _background(rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) in [0, 1]: a two-colour gradient in a random direction plus faint stripes."""
    colour_a = _hsv(rng.random(), rng.uniform(0.2, 0.6), rng.uniform(0.12, 0.45))
    colour_b = _hsv(rng.random(), rng.uniform(0.2, 0.6), rng.uniform(0.12, 0.45))
    angle, stripe_angle = rng.uniform(0, 2 * math.pi, size=2)
    along = (xs * math.cos(angle) + ys * math.sin(angle)) / size  # (H, W), in about [-0.7, 0.7]
    weight = np.clip(along + 0.5, 0.0, 1.0)[..., None]
    frequency = rng.uniform(2.0, 5.0)  # stripes per frame width
    phase = rng.uniform(0, 2 * math.pi)
    stripes = np.sin(
        2 * math.pi * frequency * (xs * math.cos(stripe_angle) + ys * math.sin(stripe_angle)) / size + phase
    )
    amplitude = rng.uniform(0.02, 0.06)
    return colour_a * (1 - weight) + colour_b * weight + amplitude * stripes[..., None]


def _trajectory(rng: np.random.Generator, motion: int, margin: float, size: int, n_frames: int):
    """Object centres ``(T,)``, ``(T,)`` in pixels for one motion type."""
    speed = rng.uniform(0.04, 0.07) * size  # px per frame
    direction = rng.choice([-1.0, 1.0])
    low, high = margin, size - margin
    if motion == 2:  # circular orbit around the centre
        radius = rng.uniform(0.18, 0.24) * size
        phase = rng.uniform(0, 2 * math.pi)
        angles = phase + direction * (speed / radius) * np.arange(n_frames, dtype=np.float32)
        return size / 2 + radius * np.cos(angles), size / 2 + radius * np.sin(angles)
    moving = _bounce(rng.uniform(low, high), direction * speed, low, high, n_frames)
    fixed = np.full(n_frames, rng.uniform(low, high), np.float32)
    return (moving, fixed) if motion == 0 else (fixed, moving)


def _signed_distance(shape: int, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Distance in pixels to the shape's edge (negative inside); shapes have the area of a radius-r circle."""
    if shape == 0:  # square, half side 0.89 r
        return np.maximum(np.abs(dx), np.abs(dy)) - 0.89 * radius
    if shape == 1:  # circle
        return np.sqrt(dx * dx + dy * dy) - radius
    # triangle, inradius 0.78 r
    return (
        np.maximum.reduce([normal[0] * dx + normal[1] * dy for normal in _TRIANGLE_NORMALS]) - 0.78 * radius
    )


def render_clip(rng: np.random.Generator, label: int, n_frames: int, size: int) -> np.ndarray:
    """One clip of class ``label`` as uint8 ``(3, T, size, size)``."""
    shape, motion = divmod(label, len(MOTIONS))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres, (H, W) each
    background = np.clip(_background(rng, ys, xs, size) * 255 + 0.5, 0, 255).astype(np.uint8)  # (H, W, 3)
    colour = _hsv(rng.random(), rng.uniform(0.7, 1.0), rng.uniform(0.85, 1.0)) * np.float32(255)
    radius = rng.uniform(0.11, 0.16) * size
    extent = 1.6 * radius  # the triangle's circumradius is 1.56 r
    centre_x, centre_y = _trajectory(rng, motion, extent, size, n_frames)
    frames = np.repeat(background[None], n_frames, axis=0)  # (T, H, W, 3)
    # Draw only inside a K x K window around the object in each frame.
    window = min(size, 2 * math.ceil(_HALF_EXTENT[shape] * radius) + 3)
    offsets = np.arange(window)
    y0 = np.clip(np.floor(centre_y - window / 2), 0, size - window).astype(np.int64)  # (T,)
    x0 = np.clip(np.floor(centre_x - window / 2), 0, size - window).astype(np.int64)  # (T,)
    dy = (y0[:, None] + offsets + 0.5 - centre_y[:, None]).astype(np.float32)[:, :, None]  # (T, K, 1)
    dx = (x0[:, None] + offsets + 0.5 - centre_x[:, None]).astype(np.float32)[:, None, :]  # (T, 1, K)
    alpha = np.clip(0.5 - _signed_distance(shape, dx, dy, radius), 0.0, 1.0)[..., None]  # (T, K, K, 1)
    for t in range(n_frames):
        patch = frames[t, y0[t] : y0[t] + window, x0[t] : x0[t] + window]  # (K, K, 3), a view
        blended = patch.astype(np.float32)
        blended += (colour - blended) * alpha[t]
        patch[...] = blended + 0.5
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2))  # (T, H, W, 3) -> (3, T, H, W)


class SyntheticVideoDataset(VideoDataset):
    """Bouncing shapes, 9 classes (shape × motion), deterministic from (seed, index); see module docstring."""

    class_names = CLASS_NAMES

    def __init__(
        self,
        n_clips: int = 4096,  # number of items
        n_frames: int = 16,  # frames per clip
        size: int = 64,  # square resolution in pixels
        seed: int = 0,  # with the index (and split), determines every clip
        train: bool = True,  # False draws from a disjoint stream (a held-out split)
        clips_per_class: int = 0,  # keep this many clips of each class: n_clips = 9 * N (0 = n_clips)
    ):
        if clips_per_class:
            n_clips = clips_per_class * len(CLASS_NAMES)
        self.n_clips, self.n_frames, self.size, self.seed, self.train = n_clips, n_frames, size, seed, train

    def __len__(self) -> int:
        return self.n_clips

    def get_clip(self, index: int, epoch: int) -> tuple[Tensor, int]:
        label = index % len(CLASS_NAMES)
        rng = np.random.default_rng([self.seed % 2**63, 0 if self.train else 1, index])
        return torch.from_numpy(render_clip(rng, label, self.n_frames, self.size)), label
