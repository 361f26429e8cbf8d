"""Procedural scenes whose objects have curved, fine boundaries.

Every class is a *shape kind* (colour is random per instance, so only the
shape tells the class). Masks are exact: a pixel is foreground iff its centre
lies inside the analytic shape, and the image is painted from the very same
masks, so a mask is the visible part of its object and nothing else.

How a scene is laid out (which kinds, how many objects, how large, whether
they may overlap, what lies behind them) is a :class:`SceneStyle`; the named
styles, with why each exists, are the dataset families of
:mod:`brefine.data.families`. The default style is the original built-in
scene: 1-4 round objects apart from each other, from a tenth of the image
across to two thirds, on a smooth texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# round kinds: wavy blobs, spiky stars, crescents, wavy rings with a hole, crosses
SHAPE_CLASSES = ("blob", "star", "crescent", "ring", "cross")
# straight edges, corners and notches
OBJECT_CLASSES = ("gear", "heart", "arrow", "leaf", "hourglass")
# concave kinds with parts 2-5 px wide at 128 px
THIN_CLASSES = ("fork", "spiral", "horseshoe", "branch", "zigzag")
ALL_KINDS = SHAPE_CLASSES + OBJECT_CLASSES + THIN_CLASSES
MIN_VISIBLE_PIXELS = 30  # smaller shapes are left out

# (share of objects, radius range as a fraction of the image side): at
# 128 px, radii 9-14 px, 14-28 px and 28-44 px
SIZE_BINS = ((0.15, (0.07, 0.11)), (0.5, (0.11, 0.22)), (0.35, (0.22, 0.34)))
PLACEMENT_TRIES = 20  # positions tried for an object before the scene goes without it
MIN_COLOUR_CONTRAST = 60  # an object's colour differs this much from what it lies on


@dataclass(frozen=True)
class SceneStyle:
    """How a scene is laid out.

    Attributes:
        classes: the shape kinds, in class-index order.
        objects: (min, max) objects tried per image.
        size_bins: ((share, (min, max) radius / image side), ...).
        gap: pixels kept free around every object; None lets objects touch
            and overlap, each new one in front of those before it.
        min_visible: with ``gap=None``, the share of its own shape an object
            must keep visible after every later object is placed.
        background_contrast: amplitude of the background's smooth texture.
        distractors: (min, max) unannotated sharp-edged rectangles, bars and
            disks painted behind the objects.
    """

    classes: tuple[str, ...] = SHAPE_CLASSES
    objects: tuple[int, int] = (1, 4)
    size_bins: tuple = SIZE_BINS
    gap: int | None = 2
    min_visible: float = 1.0
    background_contrast: float = 0.2
    distractors: tuple[int, int] = (0, 0)


@dataclass
class Scene:
    image: np.ndarray   # (H, W, 3) uint8, RGB
    masks: np.ndarray   # (N, H, W) bool, visible part of each instance
    labels: np.ndarray  # (N,) int64 class index into the style's classes


def _polar(size: int, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = xs - cx, ys - cy
    return np.hypot(dx, dy), np.arctan2(dy, dx)


def _near_polyline(u: np.ndarray, v: np.ndarray, points: list[tuple[float, float]],
                   half_width: float) -> np.ndarray:
    """Pixels within ``half_width`` of the polyline through ``points`` (local coordinates)."""
    near = np.zeros(u.shape, bool)
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:]):
        dx, dy = bx - ax, by - ay
        t = np.clip(((u - ax) * dx + (v - ay) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        near |= np.hypot(u - ax - t * dx, v - ay - t * dy) < half_width
    return near


def _shape_mask(kind: str, size: int, cx: float, cy: float, radius: float,
                rng: np.random.Generator) -> np.ndarray:
    r, theta = _polar(size, cx, cy)
    theta = theta + rng.uniform(0, 2 * np.pi)
    # rotated local coordinates in units of the radius
    u, v = r * np.cos(theta) / radius, r * np.sin(theta) / radius
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
        return (r < radius) & ((np.abs(r * np.cos(theta)) < arm) | (np.abs(r * np.sin(theta)) < arm))
    if kind == "gear":
        teeth = int(rng.integers(6, 11))
        tooth = np.cos(teeth * theta) > 0
        return (r < radius * np.where(tooth, 1.0, 0.78)) & (r >= radius * rng.uniform(0.2, 0.35))
    if kind == "heart":
        x, y = 1.15 * u, -1.15 * v + 0.15
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 < 0
    if kind == "arrow":
        shaft = (u > -1) & (u < 0.15) & (np.abs(v) < rng.uniform(0.12, 0.2))
        head = (u >= 0.15) & (u < 1) & (np.abs(v) < 0.6 * (1 - u) / 0.85)
        return shaft | head
    if kind == "leaf":
        teeth = int(rng.integers(4, 8))
        half = 0.45 * np.clip(1 - u * u, 0, None) * (0.85 + 0.15 * np.abs(np.sin(teeth * np.pi * u)))
        return (np.abs(u) < 1) & (np.abs(v) < half)
    if kind == "hourglass":
        return (np.abs(u) < 0.95) & (np.abs(v) < 0.1 + 0.55 * np.abs(u))
    # thin kinds: a stroke of 2-5 px at the 14-44 px radii their family draws
    stroke = max(rng.uniform(0.07, 0.1), 1.2 / radius)
    if kind == "fork":
        tines = int(rng.integers(3, 5))
        parts = [[(-1, 0), (0, 0)], [(0, -0.5), (0, 0.5)]]
        parts += [[(0, w), (0.95, w)] for w in np.linspace(-0.5, 0.5, tines)]
        return np.any([_near_polyline(u, v, p, stroke) for p in parts], axis=0)
    if kind == "spiral":
        turns = rng.uniform(1.8, 2.4)
        phase = r / radius * turns - np.mod(theta, 2 * np.pi) / (2 * np.pi)
        return (np.abs(phase - np.round(phase)) * radius / turns < stroke * radius) & \
            (r < radius) & (r > 0.15 * radius)
    if kind == "horseshoe":
        opening = rng.uniform(0.6, 1.1)  # half-angle of the gap, radians
        return (r < radius) & (r >= radius * rng.uniform(0.5, 0.65)) & \
            (np.cos(theta) < np.cos(opening))
    if kind == "branch":
        parts = [[(-1, 0), (0.95, 0)]]
        for at in rng.uniform(-0.6, 0.5, int(rng.integers(2, 5))):
            side = rng.choice((-1, 1))
            parts.append([(at, 0), (at + 0.4, side * rng.uniform(0.4, 0.7))])
        return np.any([_near_polyline(u, v, p, stroke) for p in parts], axis=0)
    if kind == "zigzag":
        corners = int(rng.integers(4, 7))
        xs = np.linspace(-0.95, 0.95, corners)
        points = [(x, 0.5 * (-1) ** k) for k, x in enumerate(xs)]
        return _near_polyline(u, v, points, stroke)
    raise ValueError(f"unknown shape kind {kind!r}; known: {ALL_KINDS}")


def _waves(theta: np.ndarray, rng: np.random.Generator, orders: tuple[int, ...],
           low: float, high: float) -> np.ndarray:
    """A sum of random-phase harmonics of the angle: a wavy outline."""
    return sum(rng.uniform(low, high) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
               for k in orders)


def _texture(size: int, rng: np.random.Generator, base: np.ndarray, contrast: float) -> np.ndarray:
    """Colour ``base`` modulated by gentle stripes and smooth noise: (size, size, 3).

    Both vary slowly (periods of 40 px and more, noise interpolated from a
    16-pixel grid): the texture hides nothing, and it adds no sharp edge.
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


def _contrasting_colour(rng: np.random.Generator, *others: np.ndarray) -> np.ndarray:
    while True:
        colour = rng.uniform(30, 230, 3)
        if all(np.abs(colour - other).max() >= MIN_COLOUR_CONTRAST for other in others):
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


def _paint_distractors(image: np.ndarray, rng: np.random.Generator, count: int,
                       background: np.ndarray) -> None:
    """Unannotated rectangles, bars and disks with sharp edges: edges that are no object's."""
    size = image.shape[0]
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    for _ in range(count):
        cx, cy = rng.uniform(0, size, 2)
        extent = rng.uniform(0.05, 0.25) * size
        kind = int(rng.integers(3))
        if kind == 0:  # rectangle
            aspect = rng.uniform(0.3, 1)
            region = (np.abs(xs - cx) < extent) & (np.abs(ys - cy) < extent * aspect)
        elif kind == 1:  # bar across part of the image
            angle = rng.uniform(0, np.pi)
            along = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
            across = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
            region = (np.abs(along) < 2 * extent) & (np.abs(across) < rng.uniform(1, 3))
        else:  # disk
            region = np.hypot(xs - cx, ys - cy) < extent * 0.7
        image[region] = _contrasting_colour(rng, background)


def _place(rng: np.random.Generator, style: SceneStyle, size: int, kind: str, radius: float,
           taken: np.ndarray, masks: list[np.ndarray], areas: list[int]) -> np.ndarray | None:
    """A mask for one new object where the style allows it, or None."""
    for _ in range(PLACEMENT_TRIES):
        cx, cy = rng.uniform(radius, size - radius, 2)
        mask = _shape_mask(kind, size, cx, cy, radius, rng)
        if style.gap is not None:
            if not (mask & taken).any():
                return mask
        elif all((old & ~mask).sum() >= max(style.min_visible * area, MIN_VISIBLE_PIXELS)
                 for old, area in zip(masks, areas)):
            return mask
    return None


def render_scene(rng: np.random.Generator, size: int = 128, num_classes: int | None = None,
                 style: SceneStyle = SceneStyle()) -> Scene:
    """One image with ``style.objects`` instances of the style's first ``num_classes`` kinds."""
    if num_classes is not None and not 1 <= num_classes <= len(style.classes):
        raise ValueError(f"num_classes must be in 1..{len(style.classes)}, got {num_classes}")
    classes = style.classes[:num_classes]
    background = rng.uniform(60, 200, 3)
    image = _texture(size, rng, background, contrast=style.background_contrast)
    if style.distractors[1]:
        _paint_distractors(image, rng, int(rng.integers(style.distractors[0],
                                                        style.distractors[1] + 1)), background)
    taken = np.zeros((size, size), bool)
    masks: list[np.ndarray] = []
    areas: list[int] = []
    colours: list[np.ndarray] = []
    labels: list[int] = []
    shares = np.array([share for share, _ in style.size_bins])
    low, high = style.objects
    for _ in range(int(rng.integers(low, high + 1))):
        label = int(rng.integers(len(classes)))
        lo, hi = style.size_bins[int(rng.choice(len(style.size_bins), p=shares))][1]
        radius = rng.uniform(lo, hi) * size
        mask = _place(rng, style, size, classes[label], radius, taken, masks, areas)
        if mask is None or mask.sum() < MIN_VISIBLE_PIXELS:
            continue
        # an object stands out from the background and from every object it covers
        behind = [c for m, c in zip(masks, colours) if (m & mask).any()]
        base = _contrasting_colour(rng, background, *behind)
        colour = _texture(size, rng, base, contrast=0.15)
        image[mask] = colour[mask]
        if style.gap is None:
            masks = [m & ~mask for m in masks]
        else:
            taken |= _grow(mask, style.gap)
        masks.append(mask)
        areas.append(int(mask.sum()))
        colours.append(base)
        labels.append(label)
    return Scene(image=image.astype(np.uint8),
                 masks=np.stack(masks) if masks else np.zeros((0, size, size), bool),
                 labels=np.asarray(labels, dtype=np.int64))
