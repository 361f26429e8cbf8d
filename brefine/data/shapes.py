"""Procedural scenes whose objects have curved, fine boundaries.

Every class is a *shape family* (colour is random per instance, so only the
shape tells the class): blobs with wavy outlines, stars with sharp spikes,
crescents, rings with a wavy rim and a hole, and crosses with thin arms.
Masks are exact: a pixel is foreground iff its centre lies inside the analytic
shape, and the image is painted from the very same masks. Objects lie inside
the image and apart from each other (no occlusion: every mask is a whole
shape), from a tenth of the image across to two thirds, so that a coarse mask
loses visible detail along the outlines of the larger ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPE_CLASSES = ("blob", "star", "crescent", "ring", "cross")
MIN_VISIBLE_PIXELS = 30  # smaller shapes are left out


@dataclass
class Scene:
    image: np.ndarray   # (H, W, 3) uint8, RGB
    masks: np.ndarray   # (N, H, W) bool, visible part of each instance
    labels: np.ndarray  # (N,) int64 class index into SHAPE_CLASSES


def _polar(size: int, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = xs - cx, ys - cy
    return np.hypot(dx, dy), np.arctan2(dy, dx)


def _shape_mask(kind: str, size: int, cx: float, cy: float, radius: float,
                rng: np.random.Generator) -> np.ndarray:
    r, theta = _polar(size, cx, cy)
    theta = theta + rng.uniform(0, 2 * np.pi)
    if kind == "blob":
        return r < radius * (0.8 + _waves(theta, rng, (2, 3, 5, 7, 9), 0.04, 0.1))
    if kind == "star":
        spikes = int(rng.integers(5, 10))
        return r < radius * (0.45 + 0.55 * np.abs(np.cos(spikes * theta / 2)) ** 3)
    if kind == "crescent":
        shift = radius * rng.uniform(0.35, 0.55)
        angle = rng.uniform(0, 2 * np.pi)
        inner, _ = _polar(size, cx + shift * np.cos(angle), cy + shift * np.sin(angle))
        return (r < radius) & (inner >= radius * 0.85)
    if kind == "ring":
        rim = radius * (0.92 + _waves(theta, rng, (6, 11), 0.03, 0.06))
        return (r < rim) & (r >= radius * rng.uniform(0.45, 0.6))
    if kind == "cross":
        arm = max(radius * rng.uniform(0.12, 0.2), 1.5)
        u = r * np.cos(theta)
        v = r * np.sin(theta)
        return (r < radius) & ((np.abs(u) < arm) | (np.abs(v) < arm))
    raise ValueError(f"unknown shape kind {kind!r}; known: {SHAPE_CLASSES}")


def _waves(theta: np.ndarray, rng: np.random.Generator, orders: tuple[int, ...],
           low: float, high: float) -> np.ndarray:
    """A sum of random-phase harmonics of the angle: a wavy outline."""
    return sum(rng.uniform(low, high) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
               for k in orders)


def _texture(size: int, rng: np.random.Generator, base: np.ndarray, contrast: float) -> np.ndarray:
    """Colour ``base`` modulated by gentle stripes and smooth noise: (size, size, 3).

    Both vary slowly (periods of 40 px and more, noise interpolated from a
    16-pixel grid): the texture hides nothing, and the only sharp edges in an
    image are the objects' outlines.
    """
    ys, xs = np.mgrid[0:size, 0:size]
    freq = rng.uniform(0.03, 0.15)
    angle = rng.uniform(0, np.pi)
    stripes = np.sin(freq * (xs * np.cos(angle) + ys * np.sin(angle)))
    cells = size // 16 + 2
    coarse = rng.standard_normal((cells, cells))
    at = np.arange(size) / 16
    lo = np.floor(at).astype(int)
    frac = at - lo
    rows = coarse[lo] * (1 - frac)[:, None] + coarse[lo + 1] * frac[:, None]
    noise = rows[:, lo] * (1 - frac)[None, :] + rows[:, lo + 1] * frac[None, :]
    pattern = contrast * (0.6 * stripes + 0.4 * noise)
    return np.clip(base[None, None, :] * (1 + pattern[..., None]), 0, 255)


# (share of objects, radius range as a fraction of the image side): at
# 128 px, radii 9-14 px, 14-28 px and 28-44 px
SIZE_BINS = ((0.15, (0.07, 0.11)), (0.5, (0.11, 0.22)), (0.35, (0.22, 0.34)))
PLACEMENT_TRIES = 20  # positions tried for an object before the scene goes without it
GAP = 2  # pixels kept free around every object
MIN_COLOUR_CONTRAST = 60  # an object's colour differs this much from the background's


def _object_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    while True:
        colour = rng.uniform(30, 230, 3)
        if np.abs(colour - background).max() >= MIN_COLOUR_CONTRAST:
            return colour


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` dilated by ``pixels`` (a square neighbourhood)."""
    grown = mask.copy()
    for _ in range(pixels):
        grown[1:] |= grown[:-1].copy()
        grown[:-1] |= grown[1:].copy()
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
    return grown


def render_scene(rng: np.random.Generator, size: int = 128, num_classes: int = 5,
                 max_objects: int = 4) -> Scene:
    """One image with 1..max_objects instances of the first ``num_classes`` families."""
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"num_classes must be in 1..{len(SHAPE_CLASSES)}, got {num_classes}")
    background = rng.uniform(60, 200, 3)
    image = _texture(size, rng, background, contrast=0.2)
    taken = np.zeros((size, size), bool)
    masks: list[np.ndarray] = []
    labels: list[int] = []
    shares = np.array([share for share, _ in SIZE_BINS])
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(num_classes))
        lo, hi = SIZE_BINS[int(rng.choice(len(SIZE_BINS), p=shares))][1]
        radius = rng.uniform(lo, hi) * size
        for _ in range(PLACEMENT_TRIES):
            cx, cy = rng.uniform(radius, size - radius, 2)
            mask = _shape_mask(SHAPE_CLASSES[label], size, cx, cy, radius, rng)
            if not (mask & taken).any():
                break
        else:
            continue
        if mask.sum() < MIN_VISIBLE_PIXELS:
            continue
        colour = _texture(size, rng, _object_colour(rng, background), contrast=0.15)
        image[mask] = colour[mask]
        taken |= _grow(mask, GAP)
        masks.append(mask)
        labels.append(label)
    return Scene(image=image.astype(np.uint8),
                 masks=np.stack(masks) if masks else np.zeros((0, size, size), bool),
                 labels=np.asarray(labels, dtype=np.int64))
