"""Captioned synthetic scenes for the bundled text-to-image model, and a detector that reads them back.

Shared by ``scripts/train_t2i_model.py`` (it draws the training pictures from their captions)
and ``bench/prompt_accuracy.py`` (it reads generated pictures back and scores each attribute).

A scene is one or two flat-coloured shapes on a plain background, 32x32 pixels::

    a big red circle on the left on a white background
    a small blue square on the left and a big yellow triangle on the right on a black background
    two small green triangles on a white background

Vocabulary (kept small so that a tiny model learns it on a CPU in about an hour):

    colours      red green blue yellow          shapes      circle square triangle
    sizes        small big                      backgrounds white black
    positions    left right top bottom center   (one shape); left + right (two shapes)

A caption is a pure function of its :class:`Scene`; the pixels add a little jitter (position,
radius) drawn from a seeded generator. Captions whose CRC32 is divisible by
:data:`HELD_OUT_MODULUS` are held out of training and form the benchmark set.
"""

from __future__ import annotations

import functools
import itertools
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

SIZE = 32
COLOURS = {
    "red": (0.9, 0.1, 0.1), "green": (0.1, 0.7, 0.15), "blue": (0.1, 0.2, 0.9), "yellow": (0.95, 0.85, 0.1),
}
BACKGROUNDS = {"white": (0.95, 0.95, 0.95), "black": (0.05, 0.05, 0.05)}
SHAPES = ("circle", "square", "triangle")
#: radius in pixels of each size word (the jitter is +-RADIUS_JITTER)
RADII = {"small": 4.0, "big": 6.5}
RADIUS_JITTER = 0.4
#: where a shape's centre is for each position word (x, y in pixels)
ANCHORS = {
    "left": (8.0, 16.0), "right": (24.0, 16.0), "top": (16.0, 8.0), "bottom": (16.0, 24.0), "center": (16.0, 16.0),
}
POSITION_JITTER = 1.0
HELD_OUT_MODULUS = 10
#: every word a caption may use (the tokenizer knows each as one token)
WORDS = (
    "a", "on", "the", "and", "two", "background", *COLOURS, *BACKGROUNDS, *SHAPES, *(s + "s" for s in SHAPES),
    *RADII, *ANCHORS,
)


@dataclass(frozen=True)
class Blob:
    """One shape of a scene."""

    colour: str
    shape: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    """A background and one or two blobs (two: the first is on the left, the second on the right)."""

    background: str
    blobs: tuple[Blob, ...]

    @property
    def caption(self) -> str:
        tail = f"on a {self.background} background"
        if len(self.blobs) == 1:
            b = self.blobs[0]
            return f"a {b.size} {b.colour} {b.shape} on the {b.position} {tail}"
        first, second = self.blobs
        if (first.colour, first.shape, first.size) == (second.colour, second.shape, second.size):
            return f"two {first.size} {first.colour} {first.shape}s {tail}"
        return (
            f"a {first.size} {first.colour} {first.shape} on the left and "
            f"a {second.size} {second.colour} {second.shape} on the right {tail}"
        )

    @property
    def held_out(self) -> bool:
        return zlib.crc32(self.caption.encode()) % HELD_OUT_MODULUS == 0


def all_scenes() -> list[Scene]:
    """Every scene the vocabulary describes (240 with one blob, 1152 with two), in a fixed order."""
    looks = list(itertools.product(RADII, COLOURS, SHAPES))
    scenes = [
        Scene(bg, (Blob(colour, shape, size, position),))
        for bg in BACKGROUNDS for (size, colour, shape) in looks for position in ANCHORS
    ]
    scenes += [
        Scene(bg, (Blob(c1, s1, z1, "left"), Blob(c2, s2, z2, "right")))
        for bg in BACKGROUNDS for (z1, c1, s1) in looks for (z2, c2, s2) in looks
    ]
    return scenes


def split_scenes() -> tuple[list[Scene], list[Scene]]:
    """``(train, held_out)``: the held-out captions are never drawn during training."""
    scenes = all_scenes()
    return [s for s in scenes if not s.held_out], [s for s in scenes if s.held_out]


def sample_scenes(scenes: Sequence[Scene], count: int, rng: random.Random, two_share: float = 0.15) -> list[Scene]:
    """Draw ``count`` scenes: half with one blob, half with two, ``two_share`` of those identical ("two ...")."""
    singles = [s for s in scenes if len(s.blobs) == 1]
    twins = [s for s in scenes if len(s.blobs) == 2 and s.blobs[0].colour == s.blobs[1].colour
             and s.blobs[0].shape == s.blobs[1].shape and s.blobs[0].size == s.blobs[1].size]
    pairs = [s for s in scenes if len(s.blobs) == 2 and s not in set(twins)]
    out = []
    for _ in range(count):
        roll = rng.random()
        pool = singles if roll < 0.5 else twins if roll < 0.5 + 0.5 * two_share else pairs
        out.append(rng.choice(pool))
    return out


# ---------------------------------------------------------------- drawing


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int = SIZE) -> np.ndarray:
    """A ``(size, size)`` float mask in [0, 1] of one shape (edges softened over one pixel)."""
    grid = np.arange(size, dtype=np.float32) + 0.5
    y, x = grid[:, None], grid[None, :]
    dx, dy = x - cx, y - cy
    if shape == "circle":
        signed = r - np.sqrt(dx**2 + dy**2)
    elif shape == "square":
        signed = r * 0.85 - np.maximum(np.abs(dx), np.abs(dy))
    else:  # an upright triangle: below the two slanted edges, above the base
        slant = (dy + r) * 0.5 - np.abs(dx) * 0.866 - r * 0.1
        signed = np.minimum(slant, r * 0.6 - dy)
    return np.clip(signed, -0.5, 0.5) + 0.5


def draw_scene(scene: Scene, rng: random.Random, size: int = SIZE) -> np.ndarray:
    """The scene as a ``(size, size, 3)`` float32 image in [0, 1], with seeded jitter."""
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = BACKGROUNDS[scene.background]
    scale = size / SIZE
    for blob in scene.blobs:
        ax, ay = ANCHORS[blob.position]
        cx = (ax + rng.uniform(-POSITION_JITTER, POSITION_JITTER)) * scale
        cy = (ay + rng.uniform(-POSITION_JITTER, POSITION_JITTER)) * scale
        r = (RADII[blob.size] + rng.uniform(-RADIUS_JITTER, RADIUS_JITTER)) * scale
        mask = shape_mask(blob.shape, cx, cy, r, size)[..., None]
        image = mask * np.asarray(COLOURS[blob.colour], dtype=np.float32) + (1 - mask) * image
    return image


def draw_batch(scenes: Iterable[Scene], rng: random.Random, size: int = SIZE) -> np.ndarray:
    """``(n, 3, size, size)`` float32 images in [-1, 1] (the VAE's input range)."""
    images = np.stack([draw_scene(s, rng, size) for s in scenes])
    return images.transpose(0, 3, 1, 2) * 2 - 1


# ---------------------------------------------------------------- detector

#: a pixel belongs to a blob when its colour is this far (Euclidean, RGB in [0, 1]) from the background
FOREGROUND_DISTANCE = 0.35
#: components smaller than this (pixels) are specks, not blobs
MIN_BLOB_AREA = 6


def _components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """4-connected components of a boolean mask, as lists of (y, x)."""
    seen = np.zeros_like(mask, dtype=bool)
    found = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, pixels = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            pixels.append((y, x))
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        found.append(pixels)
    return found


def _nearest(value: np.ndarray, table: dict[str, tuple[float, ...]]) -> str:
    return min(table, key=lambda k: float(np.sum((value - np.asarray(table[k])) ** 2)))


@functools.lru_cache(maxsize=None)
def _shape_offset(shape: str) -> tuple[float, float]:
    """Where a shape's area centre sits relative to its drawing centre, per unit of radius."""
    mask = shape_mask(shape, 32.0, 32.0, 16.0, 64)
    ys, xs = np.nonzero(mask > 0)
    weights = mask[ys, xs]
    cx, cy = float((xs + 0.5) @ weights / weights.sum()), float((ys + 0.5) @ weights / weights.sum())
    return (cx - 32.0) / 16.0, (cy - 32.0) / 16.0


def _fit_shape(soft: np.ndarray, size: int) -> tuple[str, float, float, float]:
    """The shape whose drawing best overlaps ``soft`` (a blob's mask in [0, 1]): ``(shape, cx, cy, r)``.

    Each shape is drawn with the blob's area (which fixes its radius) at the blob's centre
    (less the shape's own centre offset); the best soft intersection-over-union wins.
    """
    ys, xs = np.nonzero(soft)
    weights = soft[ys, xs]
    mx, my = float((xs + 0.5) @ weights / weights.sum()), float((ys + 0.5) @ weights / weights.sum())
    best = ("circle", mx, my, 0.0, -1.0)
    for shape in SHAPES:
        r = np.sqrt(soft.sum() / _shape_area(shape, 1.0))
        ox, oy = _shape_offset(shape)
        cx, cy = mx - ox * r, my - oy * r
        drawn = shape_mask(shape, cx, cy, r, size)
        iou = float(np.minimum(drawn, soft).sum() / np.maximum(drawn, soft).sum())
        if iou > best[4]:
            best = (shape, cx, cy, float(r), iou)
    return best[:4]


def detect(image: np.ndarray, size: int = SIZE) -> Scene:
    """Read a scene back from a ``(size, size, 3)`` image in [0, 1] (a generated or a drawn one).

    The background is the nearer of the two background colours to the border's median; each
    4-connected group of pixels far enough from it is a blob: its colour is the nearest palette
    colour to its mean, its size the nearer of the two areas, its position the nearest anchor of
    its centre (the two-blob anchors left/right when there are two), its shape from how much of
    its bounding box it fills. Blobs are ordered left to right.
    """
    image = np.asarray(image, dtype=np.float32)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    background = _nearest(np.median(border, axis=0), BACKGROUNDS)
    distance = np.sqrt(((image - np.asarray(BACKGROUNDS[background])) ** 2).sum(-1))
    labels = distance > FOREGROUND_DISTANCE
    blobs = []
    scale = size / SIZE
    for pixels in _components(labels):
        if len(pixels) < MIN_BLOB_AREA * scale**2:
            continue
        ys, xs = np.array([p[0] for p in pixels]), np.array([p[1] for p in pixels])
        colour = _nearest(image[ys, xs].mean(0), COLOURS)
        contrast = np.linalg.norm(np.asarray(COLOURS[colour]) - np.asarray(BACKGROUNDS[background]))
        soft = np.zeros(distance.shape, dtype=np.float32)
        soft[ys, xs] = np.clip(distance[ys, xs] / contrast, 0, 1)
        shape, cx, cy, r = _fit_shape(soft, size)
        size_word = min(RADII, key=lambda k: abs(np.log(r / scale / RADII[k])))
        blobs.append((cx / scale, cy / scale, colour, shape, size_word))
    blobs.sort(key=lambda b: b[0])
    anchors = ANCHORS if len(blobs) == 1 else {"left": ANCHORS["left"], "right": ANCHORS["right"]}
    result = []
    for cx, cy, colour, shape, size_word in blobs:
        position = min(anchors, key=lambda k: (anchors[k][0] - cx) ** 2 + (anchors[k][1] - cy) ** 2)
        result.append(Blob(colour, shape, size_word, position))
    return Scene(background, tuple(result))


def _shape_area(shape: str, r: float) -> float:
    """Area in pixels of a shape of radius ``r`` (drawn large and scaled, so edges do not matter)."""
    return _unit_area(shape) * r**2


@functools.lru_cache(maxsize=None)
def _unit_area(shape: str) -> float:
    return float(shape_mask(shape, 32.0, 32.0, 16.0, 64).sum()) / 16.0**2


# ---------------------------------------------------------------- scoring


def score(expected: Scene, found: Scene) -> dict[str, tuple[int, int]]:
    """Per attribute ``(right, total)``: background, count, and colour/shape/size/position per blob.

    Blobs are matched in order (left to right); a missing blob counts its attributes as wrong.
    """
    tally = {"background": (int(found.background == expected.background), 1),
             "count": (int(len(found.blobs) == len(expected.blobs)), 1)}
    if len(expected.blobs) == 1 and len(found.blobs) > 1:  # one asked, several found: the largest-match one
        best = max(found.blobs, key=lambda b: sum(getattr(b, a) == getattr(expected.blobs[0], a) for a in _ATTRS))
        found = Scene(found.background, (best,))
    for attr in _ATTRS:
        right = sum(
            int(i < len(found.blobs) and getattr(found.blobs[i], attr) == getattr(blob, attr))
            for i, blob in enumerate(expected.blobs)
        )
        tally[attr] = (right, len(expected.blobs))
    return tally


_ATTRS = ("colour", "shape", "size", "position")
