"""Phantom dermoscopy data: procedurally drawn lesions in the HAM10000 layout.

THIS IS NOT MEDICAL DATA. The images are cartoons drawn from a few random
shapes and noise fields. They imitate the look of dermoscopy closely enough to
exercise the whole pipeline (reading, grouped splits, caching, GAN and
classifier training, metrics) on any machine in seconds, without downloading
or redistributing HAM10000. Nothing learnt from them says anything about skin.

    from dermsynth.data.phantom import make_phantom
    make_phantom(Path("data/phantom"), per_class=100, size=128, seed=0)

The result reads like HAM10000 (``open_index(out)``)::

    out/HAM10000_metadata.csv    lesion_id,image_id,dx,synthetic  (synthetic = "phantom")
    out/images/PHANTOM_0000001.jpg ...

Images are landscape 4:3 like HAM10000's 600x450: ``size`` pixels wide and
``round(size * 3 / 4)`` high, so the centre crop is exercised. Every JPEG carries
a comment saying that it is a phantom image.

Each class has its own recipe (:data:`PAINTERS`): lesion size, border
irregularity and sharpness, colours and inner structures. Every parameter is
drawn from ranges wide enough that neighbouring classes overlap, so a small
CNN learns the classes well above chance but not perfectly, and colour alone
does not give the answer. About a quarter of the lesions get 2 or 3 images (the
same lesion redrawn with a small shift, rotation, zoom and colour change, under
one ``PHL_...`` lesion id), as in HAM10000, so grouped splits matter.

Everything is deterministic: a lesion and its camera depend only on
``(seed, class, lesion number)``, and the shift, rotation, colour change and
sensor noise of one image only on ``(seed, class, image number within the
class)``, never on drawing order; image k of a class is the same picture
whatever ``per_class`` is. The same arguments give byte-identical images and
metadata with the same numpy and Pillow on the same kind of CPU (the folder's
dermsynth marker records when it was made).
"""

from __future__ import annotations

import math
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dermsynth.data.ham10000 import write_metadata
from dermsynth.data.index import CLASSES
from dermsynth.errors import FolderError, UsageError
from dermsynth.storage import MARKER, is_owned, swap_in, write_marker

SYNTHETIC_TAG = "phantom"
"""Value of the metadata's ``synthetic`` column."""
JPEG_COMMENT = b"dermsynth phantom image: procedurally drawn, NOT medical data"
METADATA_NAME = "HAM10000_metadata.csv"
IMAGE_PREFIX = "PHANTOM_"
LESION_PREFIX = "PHL_"
IMAGES_PER_LESION_P = (0.72, 0.20, 0.08)
"""Probability that a lesion has 1, 2 or 3 images (HAM10000 has 1.34 images per lesion)."""
JPEG_QUALITY = 92
MIN_SIZE = 16
CANVAS_MARGIN = 0.16
"""Scene margin on each side, as a fraction of the image width: room for a view's shift and rotation."""

# Independent random streams, keyed with (seed, stream, class, number).
_STREAM_LESION, _STREAM_VIEW, _STREAM_GROUPS, _STREAM_IDS = 0, 1, 2, 3

Colour = tuple[float, float, float]
SKIN_LIGHT: Colour = (0.95, 0.80, 0.74)
SKIN_TAN: Colour = (0.80, 0.60, 0.48)
ERYTHEMA: Colour = (0.88, 0.55, 0.56)
HAIR: Colour = (0.14, 0.10, 0.08)
TAN: Colour = (0.74, 0.55, 0.40)
BROWN: Colour = (0.52, 0.33, 0.22)
DARK_BROWN: Colour = (0.30, 0.17, 0.11)
BLACK: Colour = (0.11, 0.08, 0.09)
BLUE_GREY: Colour = (0.46, 0.48, 0.60)
WHITE: Colour = (0.95, 0.92, 0.90)
PINK: Colour = (0.92, 0.68, 0.69)
RED: Colour = (0.80, 0.22, 0.28)
VESSEL_RED: Colour = (0.70, 0.07, 0.15)
PURPLE: Colour = (0.46, 0.13, 0.33)
KERATIN: Colour = (0.93, 0.90, 0.78)


# --------------------------------------------------------------------------- drawing tools


class Canvas:
    """The scene being drawn: float RGB in [0, 1] plus coordinates in units of the image height.

    ``rgb`` is channels-first (3, H, W): blending a colour over it is then ten times
    faster than with channels last. ``x`` (1, W) and ``y`` (H, 1) broadcast to the
    canvas, with the origin at its centre; one unit is the output image's height in
    pixels, so recipes are resolution independent.
    """

    def __init__(self, rng: np.random.Generator, width: int, height: int, unit_px: int):
        self.rng = rng
        self.width = width
        self.height = height
        self.unit_px = unit_px
        self.x = ((np.arange(width, dtype=np.float32) + 0.5 - width / 2) / unit_px)[None, :]
        self.y = ((np.arange(height, dtype=np.float32) + 0.5 - height / 2) / unit_px)[:, None]
        self.rgb = np.zeros((3, height, width), dtype=np.float32)

    @property
    def pixel(self) -> float:
        """One pixel in units."""
        return 1.0 / self.unit_px

    def noise(self, cells: float, octaves: int = 1) -> np.ndarray:
        """Smooth random field, roughly zero mean and unit spread; ``cells`` bumps per unit."""
        total = np.zeros((self.height, self.width), dtype=np.float32)
        amplitude = 1.0
        for _ in range(octaves):
            gh = max(2, round(cells * self.height / self.unit_px) + 1)
            gw = max(2, round(cells * self.width / self.unit_px) + 1)
            grid = self.rng.standard_normal((gh, gw)).astype(np.float32)
            field = Image.fromarray(grid).resize((self.width, self.height), Image.Resampling.BICUBIC)
            total += amplitude * np.asarray(field)
            cells, amplitude = cells * 2, amplitude * 0.5
        return total

    def blob(
        self,
        radius: float,
        irregularity: float,
        centre: tuple[float, float] = (0.0, 0.0),
        aspect: float = 1.0,
        angle: float = 0.0,
        max_order: int = 8,
    ) -> np.ndarray:
        """Normalised distance to a wobbly ellipse: < 1 inside, 1 on the border.

        The border radius is ``radius * (1 + sum_k a_k cos(k*theta + p_k))`` with
        ``a_k ~ irregularity / k**0.7`` for k = 2..max_order.
        """
        u = self.x - centre[0]
        v = self.y - centre[1]
        cos_a, sin_a = math.cos(angle), math.sin(angle)
        along = (u * cos_a + v * sin_a) / aspect
        across = -u * sin_a + v * cos_a
        theta = np.arctan2(across, along)
        dist = np.sqrt(along * along + across * across)
        # Tabulate the border once and look it up: much cheaper than max_order cosines per pixel.
        steps = 720
        table_theta = np.linspace(-math.pi, math.pi, steps + 1, dtype=np.float32)
        border = np.ones_like(table_theta)
        for k in range(2, max_order + 1):
            amp = irregularity * self.rng.standard_normal() / k**0.7
            border += amp * np.cos(k * table_theta + self.rng.uniform(0, 2 * math.pi))
        border = radius * np.maximum(border, 0.35)
        step = ((theta + math.pi) * (steps / (2 * math.pi)) + 0.5).astype(np.intp)
        return dist / border[step]

    def inside(self, d: np.ndarray, softness: float, radius: float) -> np.ndarray:
        """Coverage in [0, 1] of the shape ``d < 1``, with an edge ``softness`` (in d units) wide."""
        soft = max(softness, 1.2 * self.pixel / radius)
        t = np.clip((1.0 + soft - d) / (2 * soft), 0.0, 1.0)
        return t * t * (3 - 2 * t)

    def paint(self, colour: Colour | np.ndarray, alpha: np.ndarray | float) -> None:
        """Blend ``colour`` (RGB or an RGB field) over the canvas with coverage ``alpha``."""
        colour = np.asarray(colour, dtype=np.float32)
        if colour.ndim == 1:
            colour = colour[:, None, None]
        change = colour - self.rgb
        change *= np.asarray(alpha, dtype=np.float32)
        self.rgb += change

    @staticmethod
    def field(colour: Colour | np.ndarray, factor: np.ndarray) -> np.ndarray:
        """An RGB field (3, H, W): ``colour`` scaled pixel by pixel by ``factor`` (H, W)."""
        return np.asarray(colour, dtype=np.float32)[:, None, None] * factor

    def strokes(self) -> Strokes:
        return Strokes(self)


class Strokes:
    """Thin lines and dots (hair, vessels, globules) drawn 2x oversampled, for antialiasing."""

    SCALE = 2

    def __init__(self, canvas: Canvas):
        self.canvas = canvas
        self.image = Image.new("L", (canvas.width * self.SCALE, canvas.height * self.SCALE), 0)
        self.draw = ImageDraw.Draw(self.image)

    def _px(self, x: float, y: float) -> tuple[float, float]:
        c, s = self.canvas, self.SCALE
        return ((x * c.unit_px + c.width / 2) * s, (y * c.unit_px + c.height / 2) * s)

    def line(self, points: list[tuple[float, float]], width: float) -> None:
        w = max(1, round(width * self.canvas.unit_px * self.SCALE))
        self.draw.line([self._px(x, y) for x, y in points], fill=255, width=w, joint="curve")

    def ellipse(self, centre: tuple[float, float], rx: float, ry: float) -> None:
        cx, cy = self._px(*centre)
        k = self.canvas.unit_px * self.SCALE
        rx_px, ry_px = max(rx * k, 0.8), max(ry * k, 0.8)
        self.draw.ellipse((cx - rx_px, cy - ry_px, cx + rx_px, cy + ry_px), fill=255)

    def coverage(self) -> np.ndarray:
        small = self.image.reduce(self.SCALE)
        return np.asarray(small, dtype=np.float32) / 255.0


def _jitter(rng: np.random.Generator, colour: Colour, spread: float) -> np.ndarray:
    return np.clip(np.asarray(colour, dtype=np.float32) + rng.normal(0, spread, 3), 0, 1).astype(np.float32)


def _lerp(a: Colour | np.ndarray, b: Colour | np.ndarray, t: float) -> np.ndarray:
    a_, b_ = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    return a_ + (b_ - a_) * np.float32(t)


def _patches(field: np.ndarray, threshold: float, sharpness: float = 3.0) -> np.ndarray:
    """Soft mask of where a noise field exceeds ``threshold``."""
    return np.clip((field - threshold) * sharpness, 0.0, 1.0)


def _network(c: Canvas, cells: float, width: float) -> np.ndarray:
    """Pigment network: the zero lines of a smooth random field form a mesh of curved lines."""
    lines = np.clip(1.0 - np.abs(c.noise(cells)) / width, 0.0, 1.0)
    return lines * np.clip(0.6 + 0.6 * c.noise(3), 0, 1)  # patchy, not everywhere


def _random_walk(
    rng: np.random.Generator, start: tuple[float, float], heading: float, steps: int, step: float, turn: float
) -> list[tuple[float, float]]:
    points = [start]
    x, y = start
    for _ in range(steps):
        heading += rng.normal(0, turn)
        x, y = x + step * math.cos(heading), y + step * math.sin(heading)
        points.append((x, y))
    return points


@dataclass
class Shape:
    """Geometry of the main lesion body, shared by the recipes."""

    centre: tuple[float, float]
    radius: float
    d: np.ndarray
    """Normalised distance to the border (< 1 inside)."""
    mask: np.ndarray
    """Coverage in [0, 1]."""

    def around(self, rng: np.random.Generator, spread: float) -> tuple[float, float]:
        """A random point up to ``spread`` radii from the centre."""
        r = spread * self.radius * math.sqrt(rng.uniform())
        a = rng.uniform(0, 2 * math.pi)
        return (self.centre[0] + r * math.cos(a), self.centre[1] + r * math.sin(a))


def _dots_in(
    c: Canvas, strokes: Strokes, s: Shape, count: int, spread: float, size: tuple[float, float]
) -> None:
    """``count`` small dots up to ``spread`` radii from the lesion centre; ``size`` in radii."""
    for _ in range(count):
        centre = s.around(c.rng, spread)
        r = s.radius * c.rng.uniform(*size)
        strokes.ellipse(centre, r, r * c.rng.uniform(0.7, 1.3))


def _body(
    c: Canvas,
    radius: tuple[float, float],
    irregularity: tuple[float, float],
    softness: tuple[float, float],
    aspect: tuple[float, float] = (1.0, 1.3),
    max_order: int = 8,
) -> Shape:
    r = c.rng.uniform(*radius)
    centre = (c.rng.normal(0, 0.05), c.rng.normal(0, 0.04))
    d = c.blob(
        r,
        c.rng.uniform(*irregularity),
        centre=centre,
        aspect=c.rng.uniform(*aspect),
        angle=c.rng.uniform(0, math.pi),
        max_order=max_order,
    )
    return Shape(centre, r, d, c.inside(d, c.rng.uniform(*softness), r))


# --------------------------------------------------------------------------- class recipes


def paint_skin(c: Canvas) -> None:
    """Skin with its own tone, shading, redness, fine texture and sometimes freckles."""
    rng = c.rng
    base = _lerp(SKIN_LIGHT, SKIN_TAN, rng.uniform() ** 1.6) + rng.normal(0, 0.02, 3).astype(np.float32)
    shading = 1 + 0.05 * c.noise(1.5)
    c.rgb[:] = c.field(np.clip(base, 0, 1), shading)
    c.paint(ERYTHEMA, np.clip(0.5 * c.noise(5) + 0.3, 0, 1) * rng.uniform(0, 0.45))
    c.rgb += 0.018 * c.noise(30)
    if rng.uniform() < 0.3:
        c.paint(TAN, _patches(c.noise(25), 1.6, 2.0) * 0.5)


def paint_hair(c: Canvas) -> None:
    """Dark hair strands across the field (often in dermoscopy images), sometimes none."""
    rng = c.rng
    if rng.uniform() > 0.45:
        return
    strokes = c.strokes()
    half_w, half_h = c.width / c.unit_px / 2, c.height / c.unit_px / 2
    for _ in range(int(rng.integers(1, 10))):
        start = (rng.uniform(-half_w, half_w), rng.uniform(-half_h, half_h))
        length = rng.uniform(0.3, 1.4)
        steps = 12
        strokes.line(
            _random_walk(rng, start, rng.uniform(0, 2 * math.pi), steps, length / steps, 0.08),
            rng.uniform(0.004, 0.011),
        )
    c.paint(_jitter(rng, HAIR, 0.03), strokes.coverage() * rng.uniform(0.7, 0.95))


def paint_nv(c: Canvas) -> None:
    """Melanocytic nevus: round or oval, regular border, fairly uniform brown, often a network.

    Some are "atypical" (irregular, two-toned) and look like an early melanoma.
    """
    rng = c.rng
    atypical = rng.uniform() < 0.2
    s = _body(
        c,
        radius=(0.13, 0.34),
        irregularity=(0.04, 0.12) if atypical else (0.01, 0.05),
        softness=(0.06, 0.25),
        aspect=(1.0, 1.4),
    )
    colour = _lerp(TAN, DARK_BROWN, rng.uniform(0.1, 0.95))
    field = c.field(colour, 1 + 0.06 * c.noise(8) + 0.04 * c.noise(30))
    field *= 1 + rng.uniform(-0.15, 0.2) * np.clip(1 - s.d, 0, 1)  # darker or lighter centre
    c.paint(field, s.mask * rng.uniform(0.75, 0.97))
    if atypical:
        c.paint(_lerp(colour, DARK_BROWN, 0.6), _patches(c.noise(4), 0.4, 2) * s.mask * 0.8)
    if rng.uniform() < 0.6:
        net = _network(c, rng.uniform(18, 28), rng.uniform(0.25, 0.4))
        c.paint(colour * 0.6, net * s.mask * rng.uniform(0.25, 0.55))
    if rng.uniform() < 0.3:
        dots = c.strokes()
        _dots_in(c, dots, s, int(rng.integers(4, 14)), 0.75, (0.03, 0.06))
        c.paint(colour * 0.55, dots.coverage() * s.mask * 0.7)


def paint_mel(c: Canvas) -> None:
    """Melanoma: large, asymmetric, irregular border, several colours incl. black and blue-grey.

    A few are small, fairly regular and light (early melanoma), like a nevus.
    """
    rng = c.rng
    early = rng.uniform() < 0.15
    s = _body(
        c,
        radius=(0.15, 0.28) if early else (0.22, 0.44),
        irregularity=(0.04, 0.1) if early else (0.08, 0.17),
        softness=(0.03, 0.2),
        aspect=(1.0, 1.5),
        max_order=10,
    )
    base = _lerp(TAN if early else BROWN, DARK_BROWN, rng.uniform(0, 0.8))
    # Asymmetry: a colour gradient across the lesion in a random direction.
    a = rng.uniform(0, 2 * math.pi)
    tilt = (c.x * math.cos(a) + c.y * math.sin(a)) / s.radius
    field = c.field(base, 1 + 0.15 * c.noise(6, 2) + 0.05 * c.noise(30) + rng.uniform(0.05, 0.2) * tilt)
    c.paint(np.clip(field, 0, 1), s.mask * rng.uniform(0.85, 1.0))
    strength = 0.5 if early else 1.0
    blotches = _patches(c.noise(5, 2), rng.uniform(0.3, 1.2), 2)
    c.paint(_jitter(rng, BLACK, 0.03), blotches * s.mask * 0.8 * strength)
    if rng.uniform() < 0.7:  # blue-white veil
        veil = _patches(c.noise(3), rng.uniform(0.0, 0.9), 1.5) * (1 + 0.2 * c.noise(20))
        c.paint(_jitter(rng, BLUE_GREY, 0.04), veil * s.mask * rng.uniform(0.3, 0.6) * strength)
    if rng.uniform() < 0.5:
        regression = _patches(c.noise(4), rng.uniform(0.5, 1.1), 2) * s.mask * 0.55 * strength
        c.paint(_jitter(rng, WHITE, 0.04), regression)
    if rng.uniform() < 0.4:
        c.paint(_jitter(rng, RED, 0.05), _patches(c.noise(4), rng.uniform(0.6, 1.2), 2) * s.mask * 0.45)
    if rng.uniform() < 0.5:
        net = _network(c, rng.uniform(12, 20), rng.uniform(0.3, 0.5))
        c.paint(DARK_BROWN, net * s.mask * 0.55)
    if rng.uniform() < 0.5:
        dots = c.strokes()
        _dots_in(c, dots, s, int(rng.integers(5, 20)), 1.05, (0.02, 0.05))
        c.paint(BLACK, dots.coverage() * 0.75)


def paint_bkl(c: Canvas) -> None:
    """Benign keratosis: light to mid brown, sharp "stuck-on" border, waxy mottled surface.

    Solar lentigines among them are flat, even and light; some are dark like a nevus.
    """
    rng = c.rng
    lentigo = rng.uniform() < 0.3
    s = _body(
        c,
        radius=(0.16, 0.4),
        irregularity=(0.05, 0.14),
        softness=(0.1, 0.25) if lentigo else (0.02, 0.08),
        aspect=(1.0, 1.7),
    )
    colour = _lerp(TAN, DARK_BROWN, rng.uniform(0, 1) ** 2)
    colour = _lerp(colour, KERATIN, rng.uniform(0, 0.3))
    mottling = 0.06 if lentigo else 0.16
    field = c.field(colour, 1 + mottling * c.noise(12, 2))
    c.paint(np.clip(field, 0, 1), s.mask * rng.uniform(0.65, 0.95))
    if lentigo:
        c.paint(colour * 0.8, _patches(c.noise(20), 0.5, 2) * s.mask * 0.4)  # moth-eaten freckling
        return
    ridges = np.clip(1 - np.abs(c.noise(7)) / 0.12, 0, 1)  # fissures (cerebriform pattern)
    c.paint(colour * 0.6, ridges * s.mask * rng.uniform(0.2, 0.6))
    cysts = c.strokes()  # milia-like cysts
    _dots_in(c, cysts, s, int(rng.integers(0, 10)), 0.8, (0.03, 0.07))
    c.paint(_jitter(rng, KERATIN, 0.03), cysts.coverage() * s.mask * 0.85)
    pits = c.strokes()  # comedo-like openings
    _dots_in(c, pits, s, int(rng.integers(0, 8)), 0.8, (0.03, 0.06))
    c.paint(DARK_BROWN, pits.coverage() * s.mask * 0.7)
    c.paint(WHITE, _patches(c.noise(3), 0.5, 1.0) * s.mask * 0.25)  # waxy sheen


def paint_bcc(c: Canvas) -> None:
    """Basal cell carcinoma: pinkish, translucent, shiny, with branching red vessels.

    Pigmented ones carry blue-grey nests and blotches, like a melanoma.
    """
    rng = c.rng
    pigmented = rng.uniform() < 0.3
    s = _body(c, radius=(0.14, 0.34), irregularity=(0.05, 0.14), softness=(0.12, 0.35))
    base = _lerp(PINK, RED, rng.uniform(0, 0.35))
    c.paint(c.field(base, 1 + 0.05 * c.noise(6) + 0.04 * c.noise(30)), s.mask * rng.uniform(0.5, 0.85))
    c.paint(WHITE, _patches(c.noise(4), 0.3, 2) * s.mask * rng.uniform(0.2, 0.55))
    vessels = c.strokes()
    for _ in range(int(rng.integers(1, 6))):
        trunk = _random_walk(rng, s.around(rng, 0.8), rng.uniform(0, 2 * math.pi), 8, s.radius / 6, 0.35)
        width = rng.uniform(0.006, 0.014)
        vessels.line(trunk, width)
        for point in trunk[2::2]:
            if rng.uniform() < 0.6:
                branch = _random_walk(rng, point, rng.uniform(0, 2 * math.pi), 4, s.radius / 9, 0.4)
                vessels.line(branch, width * 0.6)
    vessel_alpha = vessels.coverage() * np.clip(s.mask * 1.5, 0, 1) * rng.uniform(0.4, 0.95)
    c.paint(_jitter(rng, VESSEL_RED, 0.04), vessel_alpha)
    if pigmented or rng.uniform() < 0.3:
        nests = c.strokes()
        _dots_in(c, nests, s, int(rng.integers(1, 8)), 0.8, (0.06, 0.2))
        colour = _lerp(BLUE_GREY, DARK_BROWN, rng.uniform(0, 0.7))
        c.paint(colour, nests.coverage() * rng.uniform(0.5, 0.85))
    if pigmented:
        c.paint(_jitter(rng, BLUE_GREY, 0.04), _patches(c.noise(4), 0.3, 2) * s.mask * 0.6)
    if rng.uniform() < 0.3:  # ulceration
        ulcer_r = s.radius * rng.uniform(0.15, 0.35)
        ulcer = c.blob(ulcer_r, 0.2, centre=s.around(rng, 0.3))
        c.paint((0.45, 0.14, 0.12), c.inside(ulcer, 0.2, ulcer_r) * 0.85)


def paint_akiec(c: Canvas) -> None:
    """Actinic keratosis / Bowen's disease: red-pink, ill-defined, rough, with white-yellow scale.

    Pigmented ones are brownish, like a keratosis.
    """
    rng = c.rng
    s = _body(c, radius=(0.18, 0.42), irregularity=(0.08, 0.2), softness=(0.2, 0.5), aspect=(1.0, 1.5))
    base = _lerp(RED, PINK, rng.uniform(0.2, 1.0))
    if rng.uniform() < 0.3:  # pigmented
        base = _lerp(base, BROWN, rng.uniform(0.3, 0.7))
    field = c.field(base, 1 + 0.12 * c.noise(25) + 0.06 * c.noise(6))
    c.paint(np.clip(field, 0, 1), s.mask * rng.uniform(0.5, 0.85))
    # Follicle openings in a red pseudo-network ("strawberry" pattern).
    follicles = c.strokes()
    _dots_in(c, follicles, s, int(rng.integers(0, 18)), 0.9, (0.03, 0.06))
    c.paint(WHITE, follicles.coverage() * s.mask * 0.55)
    if rng.uniform() < 0.35:  # dotted / glomerular vessels (Bowen's)
        glomeruli = c.strokes()
        _dots_in(c, glomeruli, s, int(rng.integers(6, 25)), 0.85, (0.02, 0.04))
        c.paint(VESSEL_RED, glomeruli.coverage() * s.mask * 0.7)
    scale = _patches(c.noise(14, 2), rng.uniform(0.2, 1.2), 2.5)
    c.paint(_jitter(rng, KERATIN, 0.03), scale * s.mask * rng.uniform(0.35, 0.85))


def paint_vasc(c: Canvas) -> None:
    """Vascular lesion: red to purple lobules (lacunae) with pale septa, sharp border."""
    rng = c.rng
    radius = rng.uniform(0.12, 0.32)
    base = _lerp(RED, PURPLE, rng.uniform(0, 1))
    if rng.uniform() < 0.2:  # thrombosed: almost black
        base = _lerp(base, BLACK, rng.uniform(0.3, 0.6))
    # Lobules: several small wobbly discs; d1 and d2 are the nearest and second nearest.
    d1 = np.full((c.height, c.width), np.inf, dtype=np.float32)
    d2 = d1.copy()
    shade = np.zeros_like(d1)
    for _ in range(int(rng.integers(2, 8))):
        r, a = radius * 0.5 * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
        d = c.blob(radius * rng.uniform(0.5, 0.85), 0.05, centre=(r * math.cos(a), r * math.sin(a)))
        closer = d < d1
        d2 = np.where(closer, d1, np.minimum(d2, d))
        shade = np.where(closer, rng.uniform(-0.15, 0.15), shade)
        d1 = np.minimum(d1, d)
    mask = c.inside(d1, rng.uniform(0.03, 0.12), radius)
    field = c.field(base, 1 + shade + 0.06 * c.noise(10) + 0.04 * c.noise(30))
    c.paint(np.clip(field, 0, 1), mask * rng.uniform(0.8, 1.0))
    lacunae = _patches(c.noise(14), 0.3, 2)  # darker round pools
    c.paint(base * 0.6, lacunae * mask * rng.uniform(0.2, 0.5))
    septa = np.clip(1 - (d2 - d1) / 0.12, 0, 1) * (d2 < 1.5)
    c.paint(PINK, septa * mask * rng.uniform(0.3, 0.7))
    if rng.uniform() < 0.5:  # pale or reddish halo
        halo = np.clip(c.inside(d1, 0.3, radius) - mask, 0, 1)
        c.paint(PINK, halo * 0.5)


def paint_df(c: Canvas) -> None:
    """Dermatofibroma: small, light brown fading periphery with a white scar-like centre.

    The central patch is faint or missing in some, which then look like a small nevus.
    """
    rng = c.rng
    s = _body(c, radius=(0.1, 0.25), irregularity=(0.03, 0.1), softness=(0.25, 0.6))
    colour = _lerp(TAN, BROWN, rng.uniform(0, 0.7))
    if rng.uniform() < 0.35:
        colour = _lerp(colour, PINK, rng.uniform(0.3, 0.7))
    c.paint(c.field(colour, 1 + 0.08 * c.noise(10) + 0.04 * c.noise(30)), s.mask * rng.uniform(0.6, 0.9))
    if rng.uniform() < 0.6:
        net = _network(c, rng.uniform(20, 30), rng.uniform(0.25, 0.4))
        ring = s.mask * np.clip(s.d * 1.5 - 0.3, 0, 1)
        c.paint(colour * 0.7, net * ring * 0.55)
    centre_r = s.radius * rng.uniform(0.25, 0.6)
    patch = c.blob(centre_r, 0.25, centre=s.around(rng, 0.15), aspect=rng.uniform(1, 1.6))
    strength = rng.uniform(0.0, 0.9) if rng.uniform() < 0.2 else rng.uniform(0.55, 0.9)
    c.paint(_jitter(rng, WHITE, 0.03), c.inside(patch, 0.3, centre_r) * strength)


PAINTERS: dict[str, Callable[[Canvas], None]] = {
    "nv": paint_nv,
    "mel": paint_mel,
    "bkl": paint_bkl,
    "bcc": paint_bcc,
    "akiec": paint_akiec,
    "vasc": paint_vasc,
    "df": paint_df,
}
assert tuple(PAINTERS) == CLASSES


# --------------------------------------------------------------------------- lesions and views


def image_shape(size: int) -> tuple[int, int]:
    """(width, height) of a phantom image: 4:3 landscape like HAM10000."""
    return size, round(size * 3 / 4)


@dataclass(frozen=True)
class Camera:
    """How one lesion was photographed; its images share it."""

    gain: np.ndarray
    """Per-channel gain (3,): white balance and exposure."""
    gamma: float
    vignette_radius: float | None
    """Radius of the dermoscope's dark circle, relative to the half diagonal; None for no circle."""


def draw_lesion(dx: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, Camera]:
    """The scene of one lesion (a float RGB canvas larger than the image) and its camera."""
    width, height = image_shape(size)
    margin = round(CANVAS_MARGIN * width)
    c = Canvas(rng, width + 2 * margin, height + 2 * margin, unit_px=height)
    paint_skin(c)
    PAINTERS[dx](c)
    paint_hair(c)
    camera = Camera(
        gain=(np.exp(rng.normal(0, 0.03, 3)) * np.exp(rng.normal(0, 0.07))).astype(np.float32),
        gamma=float(np.exp(rng.normal(0, 0.08))),
        vignette_radius=float(rng.uniform(0.8, 1.05)) if rng.uniform() < 0.4 else None,
    )
    return np.clip(c.rgb, 0, 1), camera


def render_view(
    scene: np.ndarray, camera: Camera, size: int, rng: np.random.Generator, first: bool
) -> Image.Image:
    """One photograph of a scene; the ``first`` is the scene's centre as drawn, later ones
    are shifted, rotated, zoomed and recoloured a little. Then the dermoscope's vignette."""
    width, height = image_shape(size)
    ch, cw = scene.shape[1:]
    ox, oy = width / 2, height / 2
    if first:
        top, left = (ch - height) // 2, (cw - width) // 2
        rgb = scene[:, top : top + height, left : left + width]
        gain = camera.gain
    else:
        # Bounded so that the view stays inside the scene's margin.
        angle = rng.uniform(-0.15, 0.15)
        shift = (rng.uniform(-0.04, 0.04) * width, rng.uniform(-0.04, 0.04) * height)
        zoom = math.exp(rng.uniform(-0.08, 0.08))
        gain = camera.gain * np.exp(rng.normal(0, 0.03, 3)).astype(np.float32)
        # Output pixel p samples the scene at scene_centre + R(angle) (p - centre) / zoom + shift.
        cos_a, sin_a = math.cos(angle) / zoom, math.sin(angle) / zoom
        sx, sy = cw / 2 + shift[0], ch / 2 + shift[1]
        affine = (cos_a, -sin_a, sx - cos_a * ox + sin_a * oy, sin_a, cos_a, sy - sin_a * ox - cos_a * oy)
        rgb = np.stack(
            [
                np.asarray(
                    Image.fromarray(channel).transform(
                        (width, height), Image.Transform.AFFINE, affine, Image.Resampling.BILINEAR
                    )
                )
                for channel in scene
            ]
        )
    rgb = np.clip(rgb * gain[:, None, None], 0, 1) ** np.float32(camera.gamma)
    if camera.vignette_radius is not None:
        yy = (np.arange(height, dtype=np.float32) + 0.5 - oy)[:, None]
        xx = (np.arange(width, dtype=np.float32) + 0.5 - ox)[None, :]
        dist = np.sqrt(xx * xx + yy * yy) / (camera.vignette_radius * math.hypot(ox, oy))
        dark = np.clip((dist - 0.94) / 0.08, 0, 1)
        rgb = rgb * (1 - dark) + np.float32(0.05) * dark
    # Sensor noise: uniform, std 0.008 (a normal draw costs as much as the rest of the view).
    rgb += np.float32(0.028) * (rng.random(rgb.shape, dtype=np.float32) - np.float32(0.5))
    pixels = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))


@dataclass(frozen=True)
class PlannedImage:
    image_id: str
    lesion_id: str
    dx: str
    lesion: int
    """Lesion number within the class."""
    index: int
    """Image number within the class."""


def plan_images(per_class: int, seed: int) -> list[PlannedImage]:
    """Every image to draw, with its ids; ids are shuffled across classes like HAM10000's."""
    raw = []  # (dx, lesion number, image number), class by class
    for label, dx in enumerate(CLASSES):
        rng = np.random.default_rng([seed, _STREAM_GROUPS, label])
        counts = rng.choice((1, 2, 3), size=per_class, p=IMAGES_PER_LESION_P)
        index = 0
        for lesion, count in enumerate(counts):
            for _ in range(min(int(count), per_class - index)):
                raw.append((dx, lesion, index))
                index += 1
            if index == per_class:
                break
    order = np.random.default_rng([seed, _STREAM_IDS]).permutation(len(raw))
    image_number = {raw_i: n + 1 for n, raw_i in enumerate(order.tolist())}
    lesion_number: dict[tuple[str, int], int] = {}
    for raw_i in order.tolist():
        dx, lesion, _ = raw[raw_i]
        lesion_number.setdefault((dx, lesion), len(lesion_number) + 1)
    plan = [
        PlannedImage(
            image_id=f"{IMAGE_PREFIX}{image_number[i]:07d}",
            lesion_id=f"{LESION_PREFIX}{lesion_number[(dx, lesion)]:07d}",
            dx=dx,
            lesion=lesion,
            index=index,
        )
        for i, (dx, lesion, index) in enumerate(raw)
    ]
    return plan


# --------------------------------------------------------------------------- the dataset


def check_arguments(per_class: int, size: int, seed: int) -> None:
    """Raise one error that lists every bad argument.

    It is a :class:`UsageError` (a ValueError) so that the CLI reports it as one clean line.
    """
    problems = []
    for name, value, low in (("per_class", per_class, 1), ("size", size, MIN_SIZE), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            problems.append(f"{name} must be an integer, got {value!r}")
        elif value < low:
            problems.append(f"{name} must be >= {low}, got {value}")
    if problems:
        raise UsageError("make_phantom: " + "; ".join(problems))


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise FolderError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise FolderError(f"{out}: folder is not empty; choose another folder or pass overwrite=True")
    if out.is_symlink() or not is_owned(out, "phantom"):
        # Overwriting means deleting: only ever delete what make_phantom itself wrote (its marker says so).
        raise FolderError(
            f"{out}: folder is not empty and is not phantom data made by dermsynth (no phantom marker {MARKER}); "
            "refusing to delete it even with overwrite=True"
        )


def _sibling(out: Path, kind: str) -> Path:
    """A new hidden folder next to ``out`` (plain mkdir: normal permissions, unlike mkdtemp's 0700)."""
    while True:
        path = out.parent / f".{out.name}.{kind}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def make_phantom(out: Path, per_class: int, size: int, seed: int, overwrite: bool = False) -> Path:
    """Draw ``per_class`` phantom images for each of the 7 classes into ``out`` (HAM10000 layout).

    Images are ``size`` x ``round(size * 3 / 4)`` JPEGs. The same arguments give
    byte-identical images and metadata. ``out`` must be missing or empty, or hold an earlier
    phantom dataset (its marker says so) and ``overwrite=True``. The dataset is written into a hidden
    sibling folder and renamed at the end, so a crash never leaves half a dataset.
    Returns ``out``. NOT medical data: see the module docstring.
    """
    out = Path(out)
    check_arguments(per_class, size, seed)
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out, "partial")
    try:
        images = tmp / "images"
        images.mkdir()
        plan = plan_images(per_class, seed)
        by_lesion: dict[tuple[str, int], list[PlannedImage]] = {}
        for item in plan:
            by_lesion.setdefault((item.dx, item.lesion), []).append(item)
        for (dx, lesion), items in by_lesion.items():
            label = CLASSES.index(dx)
            lesion_rng = np.random.default_rng([seed, _STREAM_LESION, label, lesion])
            scene, camera = draw_lesion(dx, size, lesion_rng)
            for view, item in enumerate(items):
                rng = np.random.default_rng([seed, _STREAM_VIEW, label, item.index])
                image = render_view(scene, camera, size, rng, first=view == 0)
                image.save(images / f"{item.image_id}.jpg", quality=JPEG_QUALITY, comment=JPEG_COMMENT)
        rows = [
            {"lesion_id": p.lesion_id, "image_id": p.image_id, "dx": p.dx, "synthetic": SYNTHETIC_TAG}
            for p in sorted(plan, key=lambda p: (p.lesion_id, p.image_id))
        ]
        write_metadata(tmp / METADATA_NAME, rows, extra_columns=("synthetic",))
        write_marker(tmp, "phantom")
        _check_out(out, overwrite)  # again: something may have appeared meanwhile
        old = _sibling(out, "old")
        old.rmdir()
        swap_in(tmp, out, old, "phantom")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
