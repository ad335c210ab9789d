"""Synthetic rooms: materials, the three shape primitives and random scene sampling.

``make_scene(seed, index)`` draws a room (floor, walls, ceiling; doors and pictures on the walls)
with cabinets, a table on legs, boxes, balls and cylinders, a ceiling lamp and a fill light.
Shapes answer ray queries (``hit``, ``normal``, ``corners``) for ``grid.synth.render``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GENERATOR_VERSION = 1  # bump when the rendered bytes change: it is part of the cache key
EPS = 1e-4


@dataclass(frozen=True)
class Material:
    color: np.ndarray  # (3,) linear albedo
    color2: np.ndarray  # (3,) second colour of the pattern
    pattern: str  # plain | stripes | checker | planks | tiles
    scale: float  # pattern period in metres


def _bounds_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], np.float32)


# Geometry works on (3, ...) arrays: component-first keeps every numpy op on long contiguous rows
# (reductions over a last axis of length 3 were the bottleneck). ``o`` is (3,) for camera rays
# or (3, M) for shadow rays; ``d`` is (3, ...) and need not be unit length.

@dataclass(frozen=True)
class Box:
    center: np.ndarray  # (3,)
    half: np.ndarray  # (3,) half extents in the box's own frame
    yaw: float  # rotation about the vertical
    mat: Material

    def _local(self, v: np.ndarray, offset: bool) -> tuple:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        x, y, z = (v[0] - self.center[0], v[1] - self.center[1], v[2] - self.center[2]) if offset else v
        return c * x - s * z, y, s * x + c * z

    def hit(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        tmin, tmax = -np.inf, np.inf
        with np.errstate(divide="ignore", invalid="ignore"):
            for ol, dl, h in zip(self._local(o, True), self._local(d, False), self.half, strict=True):
                inv = 1.0 / dl
                t1, t2 = (-h - ol) * inv, (h - ol) * inv
                tmin, tmax = np.maximum(tmin, np.minimum(t1, t2)), np.minimum(tmax, np.maximum(t1, t2))
        return np.where((tmax >= tmin) & (tmin > EPS), tmin, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        pl = np.stack(self._local(p, True))
        axis = np.abs(pl / self.half[:, None]).argmax(0)
        nl = np.zeros_like(pl)
        cols = np.arange(pl.shape[1])
        nl[axis, cols] = np.sign(pl[axis, cols])
        c, s = math.cos(self.yaw), math.sin(self.yaw)  # back to the world: the inverse rotation
        return np.stack([c * nl[0] + s * nl[2], nl[1], -s * nl[0] + c * nl[2]])

    def corners(self) -> np.ndarray:
        r = math.hypot(self.half[0], self.half[2])  # a yaw-invariant bound is enough for culling
        return _bounds_corners(self.center - [r, self.half[1], r], self.center + [r, self.half[1], r])


@dataclass(frozen=True)
class Sphere:
    center: np.ndarray
    radius: float
    mat: Material

    def hit(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ox, oy, oz = o[0] - self.center[0], o[1] - self.center[1], o[2] - self.center[2]
        a, b = d[0] * d[0] + d[1] * d[1] + d[2] * d[2], ox * d[0] + oy * d[1] + oz * d[2]
        disc = b * b - a * (ox * ox + oy * oy + oz * oz - self.radius**2)
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
        return np.where((disc >= 0) & (t > EPS), t, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        return (p - self.center[:, None]) / self.radius

    def corners(self) -> np.ndarray:
        return _bounds_corners(self.center - self.radius, self.center + self.radius)


@dataclass(frozen=True)
class Cylinder:
    center: np.ndarray  # (3,): x, z of the vertical axis; y unused
    radius: float
    y0: float
    y1: float
    mat: Material

    def hit(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ox, oz, oy = o[0] - self.center[0], o[2] - self.center[2], o[1]
        a, b = d[0] * d[0] + d[2] * d[2], ox * d[0] + oz * d[2]
        disc = b * b - a * (ox * ox + oz * oz - self.radius**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            ts = (-b - np.sqrt(np.maximum(disc, 0))) / a
            ys = oy + ts * d[1]
            side = (disc >= 0) & (ts > EPS) & (ys >= self.y0) & (ys <= self.y1)
            tc = (np.where(oy > self.y1, self.y1, self.y0) - oy) / d[1]  # the cap facing the origin
            cx, cz = ox + tc * d[0], oz + tc * d[2]
            cap = (tc > EPS) & (cx * cx + cz * cz <= self.radius**2)
        return np.minimum(np.where(side, ts, np.inf), np.where(cap, tc, np.inf))

    def normal(self, p: np.ndarray) -> np.ndarray:
        n = np.stack([(p[0] - self.center[0]) / self.radius, np.zeros_like(p[1]), (p[2] - self.center[2]) / self.radius])
        top, bottom = np.abs(p[1] - self.y1) < 1e-3, np.abs(p[1] - self.y0) < 1e-3
        n[:, top | bottom] = 0.0
        n[1, top], n[1, bottom] = 1.0, -1.0
        return n

    def corners(self) -> np.ndarray:
        r = self.radius
        return _bounds_corners(np.array([self.center[0] - r, self.y0, self.center[2] - r]),
                               np.array([self.center[0] + r, self.y1, self.center[2] + r]))


@dataclass(frozen=True)
class Scene:
    """A room ``[0, w] x [0, h] x [0, d]`` (x, y up, z) with its objects and lights."""

    room: np.ndarray  # (3,) w, h, d in metres
    objects: tuple
    room_mats: tuple  # floor, ceiling, wall x=0, x=w, z=0, z=d
    decals: tuple  # (wall face, u0, u1, v0, v1, Material) rectangles on walls
    light: np.ndarray  # (3,) ceiling lamp position
    fill: np.ndarray  # (3,) unit direction of the shadowless fill light
    noise: np.ndarray  # (64, 64) value-noise lattice for textures
    exposure: float
    footprints: tuple  # (x, z, radius) of the objects on the floor, to keep the camera out

    @property
    def diagonal(self) -> float:
        return float(np.linalg.norm(self.room))


def _hsv(rng: np.random.Generator, s: tuple, v: tuple) -> np.ndarray:
    h, s_, v_ = rng.uniform(0, 1), rng.uniform(*s), rng.uniform(*v)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return (v_ - v_ * s_ * np.clip(np.minimum(k, 4 - k), 0, 1)).astype(np.float32) ** 2  # to linear, gamma 2


def _material(rng: np.random.Generator, patterns: tuple, s=(0.2, 0.8), v=(0.35, 0.9), scale=(0.08, 0.5)) -> Material:
    return Material(_hsv(rng, s, v), _hsv(rng, s, v), str(rng.choice(patterns)), float(rng.uniform(*scale)))


def _yaw(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)


def make_scene(seed: int, index: int) -> Scene:
    """Scene ``index`` of a seed; independent of how many scenes are generated."""
    rng = np.random.default_rng([seed, index, GENERATOR_VERSION])
    room = np.array([rng.uniform(3.0, 6.0), rng.uniform(2.4, 3.0), rng.uniform(3.5, 7.0)], np.float32)
    w, h, d = room
    objects: list = []
    used: list[tuple[float, float, float]] = []  # floor footprints (x, z, radius)

    def place(radius: float, against_wall: bool = False) -> tuple[float, float] | None:
        for _ in range(30):
            if against_wall:  # along a wall, like a cabinet or a bookshelf
                side = rng.integers(4)
                x = [radius, w - radius, rng.uniform(radius, w - radius), rng.uniform(radius, w - radius)][side]
                z = [rng.uniform(radius, d - radius), rng.uniform(radius, d - radius), radius, d - radius][side]
            else:
                x, z = rng.uniform(radius + 0.1, w - radius - 0.1), rng.uniform(radius + 0.1, d - radius - 0.1)
            if all((x - ux) ** 2 + (z - uz) ** 2 > (radius + ur) ** 2 for ux, uz, ur in used):
                used.append((x, z, radius))
                return x, z
        return None

    def box(c, half, yaw, mat):
        objects.append(Box(np.array(c, np.float32), np.array(half, np.float32), float(yaw), mat))

    obj_patterns = ("plain", "plain", "stripes", "checker", "planks")
    for _ in range(rng.integers(1, 4)):  # cabinets and shelves against the walls
        hx, hy, hz = rng.uniform(0.2, 0.6), rng.uniform(0.3, 1.0), rng.uniform(0.2, 0.4)
        if (xz := place(max(hx, hz), against_wall=True)) is not None:
            box((xz[0], hy, xz[1]), (hx, hy, hz), 0.0, _material(rng, obj_patterns))
    hx, hz, top, yaw = rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.5), rng.uniform(0.65, 0.8), rng.uniform(0, np.pi)
    if rng.uniform() < 0.7 and (xz := place(math.hypot(hx, hz))) is not None:  # a table on four legs
        mat, rot = _material(rng, ("plain", "planks")), _yaw(yaw)
        box((xz[0], top, xz[1]), (hx, 0.025, hz), yaw, mat)
        for sx, sz in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            off = rot @ np.array([sx * (hx - 0.05), 0, sz * (hz - 0.05)], np.float32)
            box((xz[0] + off[0], top / 2, xz[1] + off[2]), (0.025, top / 2, 0.025), yaw, mat)
        if rng.uniform() < 0.6:
            r = rng.uniform(0.08, 0.15)
            objects.append(Sphere(np.array([xz[0], top + 0.025 + r, xz[1]], np.float32), r, _material(rng, obj_patterns)))
    for _ in range(rng.integers(1, 4)):  # free-standing boxes, turned
        hx, hy, hz = rng.uniform(0.15, 0.5), rng.uniform(0.15, 0.6), rng.uniform(0.15, 0.5)
        if (xz := place(math.hypot(hx, hz))) is not None:
            box((xz[0], hy, xz[1]), (hx, hy, hz), rng.uniform(0, np.pi), _material(rng, obj_patterns))
    for _ in range(rng.integers(1, 3)):  # balls on the floor
        r = rng.uniform(0.12, 0.4)
        if (xz := place(r)) is not None:
            objects.append(Sphere(np.array([xz[0], r, xz[1]], np.float32), r, _material(rng, obj_patterns)))
    for _ in range(rng.integers(0, 3)):  # bins, stools, columns
        r, top = rng.uniform(0.1, 0.3), rng.uniform(0.3, 1.2)
        if (xz := place(r)) is not None:
            objects.append(Cylinder(np.array([xz[0], 0, xz[1]], np.float32), r, 0.0, top, _material(rng, obj_patterns)))

    wall = _material(rng, ("plain", "plain", "stripes"), s=(0.05, 0.3), v=(0.6, 0.95), scale=(0.1, 0.4))
    room_mats = (_material(rng, ("planks", "tiles", "checker"), v=(0.3, 0.8), scale=(0.15, 0.6)),
                 _material(rng, ("plain",), s=(0.0, 0.1), v=(0.85, 0.95)), wall, wall, wall, wall)
    decals = []
    for _ in range(rng.integers(1, 5)):
        face = int(rng.integers(2, 6))
        span = d if face in (2, 3) else w
        if rng.uniform() < 0.3 and span > 1.2:  # a door
            u0 = rng.uniform(0.1, span - 1.0)
            decals.append((face, u0, u0 + 0.9, 0.0, 2.0, _material(rng, ("planks", "plain"), v=(0.3, 0.7))))
        else:  # a picture
            pw, ph = rng.uniform(0.3, 1.2), rng.uniform(0.3, 0.9)
            u0, v0 = rng.uniform(0.05, max(0.06, span - pw - 0.05)), rng.uniform(1.0, h - ph - 0.2)
            decals.append((face, u0, u0 + pw, v0, v0 + ph, _material(rng, ("stripes", "checker", "plain"), s=(0.4, 1.0))))
    light = np.array([rng.uniform(0.3, 0.7) * w, h - 0.15, rng.uniform(0.3, 0.7) * d], np.float32)
    fill = rng.normal(size=3)
    fill[1] = abs(fill[1]) + 0.5
    return Scene(room, tuple(objects), room_mats, tuple(decals), light, (fill / np.linalg.norm(fill)).astype(np.float32),
                 rng.uniform(0, 1, (64, 64)).astype(np.float32), float(rng.uniform(0.85, 1.15)), tuple(used))
