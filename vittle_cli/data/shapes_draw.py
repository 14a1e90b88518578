"""Scene sampling and drawing for `builtin:shapes`: which objects share an image, and the PNG pixels.

An "object" is a (colour, shape) pair such as ("red", "circle"). Images are drawn from a few fixed scene
types, each favouring a handful of objects, so object frequency and co-occurrence are structured: POPE's
"popular" and "adversarial" negatives then differ meaningfully from random ones.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Only words the tiny BPE tokenizer was trained on (see model/builtin.py _CORPUS).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 225),
    "yellow": (235, 200, 10),
}
# 12 objects: few enough that the ~1M-parameter tiny model learns to ground them in a CPU demo (with all 6
# colours x 5 shapes it stayed at chance for 1,300 steps); tests and suites never depend on the exact list.
SHAPES = ("circle", "square", "triangle")
OBJECTS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)

IMAGE_SIZE = 64
CELL = IMAGE_SIZE // 2  # a 2x2 grid of cells, one shape per cell: shapes never overlap
MIN_RADIUS, MAX_RADIUS = 9, 12  # 18-24 px across in a 32 px cell (the tiny model's patches are 16 px)
NUM_OBJECTS_WEIGHTS = {1: 0.15, 2: 0.30, 3: 0.30, 4: 0.25}
FAVOURED_PROB = 0.85  # chance that an object comes from the scene's favourites rather than anywhere

# (scene weight, favoured objects, most favoured first). Some objects are favoured by two scenes, so they
# are the "popular" ones; objects favoured by one scene co-occur, giving "adversarial" negatives.
SCENES: tuple[tuple[float, str], ...] = (
    (0.40, "red circle, blue square, yellow triangle, green circle, red square"),
    (0.35, "green triangle, blue circle, yellow square, red triangle, blue triangle"),
    (0.25, "yellow circle, green square, red circle, blue square, green triangle"),
)
FAVOURED_WEIGHTS = (5, 4, 3, 2, 1)


@dataclass(frozen=True)
class PlacedObject:
    colour: str
    shape: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the 64x64 image

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def sample_objects(rng: random.Random) -> tuple[int, list[tuple[str, str]]]:
    """Draw a scene index and 1-4 distinct objects following the scene statistics."""
    scene = rng.choices(range(len(SCENES)), weights=[w for w, _ in SCENES])[0]
    names = SCENES[scene][1].split(", ")
    favoured = [(tuple(n.split()), w) for n, w in zip(names, FAVOURED_WEIGHTS, strict=True)]
    n = rng.choices(list(NUM_OBJECTS_WEIGHTS), weights=list(NUM_OBJECTS_WEIGHTS.values()))[0]
    chosen: list[tuple[str, str]] = []
    while len(chosen) < n:
        left = [(o, w) for o, w in favoured if o not in chosen]
        if left and rng.random() < FAVOURED_PROB:
            obj = rng.choices([o for o, _ in left], weights=[w for _, w in left])[0]
        else:
            obj = rng.choice([o for o in OBJECTS if o not in chosen])
        chosen.append(obj)
    return scene, chosen


def place_objects(rng: random.Random, objects: list[tuple[str, str]]) -> list[PlacedObject]:
    """Give each object its own grid cell, a size and a jittered centre; sorted in reading order."""
    cells = rng.sample(range(4), len(objects))
    placed = []
    for (colour, shape), cell in zip(objects, cells, strict=True):
        r = rng.randint(MIN_RADIUS, MAX_RADIUS)
        cx = (cell % 2) * CELL + rng.randint(r + 1, CELL - r - 1)
        cy = (cell // 2) * CELL + rng.randint(r + 1, CELL - r - 1)
        placed.append(PlacedObject(colour, shape, (cx - r, cy - r, cx + r, cy + r)))
    return sorted(placed, key=lambda p: (p.bbox[1] // CELL, p.bbox[0] // CELL))


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx, cy - r), (cx - 0.95 * r, cy + 0.8 * r), (cx + 0.95 * r, cy + 0.8 * r)]
    if shape == "star":
        return [
            (
                cx + (r if i % 2 == 0 else 0.45 * r) * math.cos(-math.pi / 2 + i * math.pi / 5),
                cy + (r if i % 2 == 0 else 0.45 * r) * math.sin(-math.pi / 2 + i * math.pi / 5),
            )
            for i in range(10)
        ]
    if shape == "cross":  # a plus sign
        t = 0.35 * r
        return [
            (cx - t, cy - r),
            (cx + t, cy - r),
            (cx + t, cy - t),
            (cx + r, cy - t),
            (cx + r, cy + t),
            (cx + t, cy + t),
            (cx + t, cy + r),
            (cx - t, cy + r),
            (cx - t, cy + t),
            (cx - r, cy + t),
            (cx - r, cy - t),
            (cx - t, cy - t),
        ]
    raise ValueError(shape)


def draw_image(rng: random.Random, placed: list[PlacedObject]) -> Image.Image:
    """Render the objects on a plain light background (a slightly different tint per image)."""
    base = rng.randint(228, 248)
    background = tuple(min(255, base + rng.randint(-6, 6)) for _ in range(3))
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(img)
    for p in placed:
        x0, y0, x1, y1 = p.bbox
        fill = COLOURS[p.colour]
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
        if p.shape == "circle":
            draw.ellipse(p.bbox, fill=fill)
        elif p.shape == "square":
            h = 0.85 * r
            draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
        else:
            draw.polygon(_polygon(p.shape, cx, cy, r), fill=fill)
    return img
