"""Built-in synthetic indoor scenes: the default dataset, rendered by vectorised numpy ray casting.

A scene is a room (floor, walls, ceiling; doors, pictures and a skirting board on the walls)
holding boxes (cabinets, tables on legs), spheres and cylinders with procedural textures, lit by
a ceiling lamp (Lambertian, hard shadows, distance fall-off) plus ambient and a fill light. A
pinhole camera with a NYU-like 60 deg horizontal field of view gives exact z-depth in metres
(along the optical axis, like a Kinect). Views of one scene are small camera moves (``jitter``)
or a continuous walk + pan (``drift``). Written in the competition layout (``cil``) with
``scenes.csv`` mapping each item to its scene. Same seed, same bytes.

Hand-written because no maintained library renders depth + RGB with numpy alone; a real
renderer (pyrender, Blender) would add an OpenGL/GPU dependency to the default data path.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from grid.cli import parse_size

GENERATOR_VERSION = 1  # bump when the rendered bytes change: it is part of the cache key
HFOV_DEG = 60.0
EPS = 1e-4
MOTIONS = ("jitter", "drift")


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


# ---- textures ---------------------------------------------------------------------------------

def _noise(tab: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smooth value noise in [0, 1] with a period of 64 lattice cells."""
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    i0, j0 = iu.astype(np.int64) & 63, iv.astype(np.int64) & 63
    i1, j1 = (i0 + 1) & 63, (j0 + 1) & 63
    top = tab[i0, j0] * (1 - fv) + tab[i0, j1] * fv
    bottom = tab[i1, j0] * (1 - fv) + tab[i1, j1] * fv
    return top * (1 - fu) + bottom * fu


def _uv(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Planar texture coordinates (metres) chosen by the dominant normal axis."""
    axis = np.abs(n).argmax(0)
    return np.where(axis == 0, p[2], p[0]), np.where(axis == 1, p[2], p[1])


def _pattern_mix(mat: Material, u: np.ndarray, v: np.ndarray, tab: np.ndarray) -> np.ndarray:
    """Share of ``color2`` per point (0..1) for the material's pattern."""
    s = mat.scale
    cu, cv = np.floor(u / s), np.floor(v / s)
    if mat.pattern == "stripes":
        return cu % 2
    if mat.pattern == "checker":
        return (cu + cv) % 2
    if mat.pattern == "planks":  # boards of width s, each with its own tint, grain along the board
        return 0.5 * tab[cu.astype(np.int64) & 63, 7] + 0.5 * _noise(tab, cu * 13 + u / s * 0.5, v * 20.0 / s)
    if mat.pattern == "tiles":  # tiles of side s with grout lines
        fu, fv = u / s - cu, v / s - cv
        grout = (np.minimum(fu, 1 - fu) < 0.03) | (np.minimum(fv, 1 - fv) < 0.03)
        return np.where(grout, 1.0, 0.3 * tab[cu.astype(np.int64) & 63, cv.astype(np.int64) & 63])
    return 0.4 * _noise(tab, u / s, v / s)  # plain: soft blotches


def _albedo(mat: Material, p: np.ndarray, n: np.ndarray, tab: np.ndarray) -> np.ndarray:
    """(3, M) linear albedo of a material at points ``p`` with normals ``n``."""
    u, v = _uv(p, n)
    mix = _pattern_mix(mat, u, v, tab)
    grain = 0.88 + 0.24 * _noise(tab, u * 23.0 + 5, v * 23.0 + 11)
    return (mat.color[:, None] * (1 - mix) + mat.color2[:, None] * mix) * grain


def _room_albedo(scene: Scene, face: int, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    albedo = _albedo(scene.room_mats[face], p, n, scene.noise)
    if face < 2:
        return albedo
    u, v = (p[2] if face in (2, 3) else p[0]), p[1]
    for dface, u0, u1, v0, v1, mat in scene.decals:
        inside = np.nonzero((u >= u0) & (u <= u1) & (v >= v0) & (v <= v1))[0] if dface == face else ()
        if len(inside):
            ui, vi = u[inside], v[inside]
            frame = (np.minimum(ui - u0, u1 - ui) < 0.04) | (np.minimum(vi - v0, v1 - vi) < 0.04)
            albedo[:, inside] = np.where(frame, 0.05, _albedo(mat, p[:, inside], n[:, inside], scene.noise))
    albedo[:, v < 0.08] = 0.6  # skirting board
    return albedo


# ---- ray casting ------------------------------------------------------------------------------

ROOM_NORMALS = np.array([[0, 1, 0], [0, -1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1]], np.float32)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: position, unit axes (right, down, forward) and focal length in pixels."""

    pos: np.ndarray
    axes: np.ndarray  # (3, 3) rows: right, down, forward
    focal: float
    size: tuple[int, int]

    @classmethod
    def make(cls, pos: np.ndarray, yaw: float, pitch: float, roll: float, size: tuple[int, int]) -> Camera:
        fwd = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
        right = np.cross([0.0, 1.0, 0.0], fwd)
        right /= np.linalg.norm(right)
        down = np.cross(right, fwd)
        c, s = math.cos(roll), math.sin(roll)
        axes = np.stack([right * c + down * s, down * c - right * s, fwd]).astype(np.float32)
        focal = (size[1] / 2) / math.tan(math.radians(HFOV_DEG) / 2)
        return cls(np.asarray(pos, np.float32), axes, focal, size)

    def rays(self) -> np.ndarray:
        """(3, H, W) directions scaled so that the distance ``t`` along a ray is its z-depth."""
        h, w = self.size
        xs = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / self.focal
        ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / self.focal
        r, dn, f = self.axes
        return f[:, None, None] + xs[None, None, :] * r[:, None, None] + ys[None, :, None] * dn[:, None, None]

    def window(self, corners: np.ndarray) -> tuple[slice, slice] | None:
        """Pixel rows/cols that can see a convex object with these bounding corners (culling)."""
        cam = (corners - self.pos) @ self.axes.T  # (8, 3): x right, y down, z forward
        h, w = self.size
        if (cam[:, 2] <= 0.05).any():  # partly behind the camera: test every pixel
            return slice(0, h), slice(0, w)
        u = cam[:, 0] / cam[:, 2] * self.focal + (w - 1) / 2
        v = cam[:, 1] / cam[:, 2] * self.focal + (h - 1) / 2
        c0, c1 = max(int(u.min()) - 1, 0), min(int(u.max()) + 2, w)
        r0, r1 = max(int(v.min()) - 1, 0), min(int(v.max()) + 2, h)
        return (slice(r0, r1), slice(c0, c1)) if r0 < r1 and c0 < c1 else None


def _hit_room(room: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exit distance from inside the room box and the face hit (0 floor, 1 ceiling, 2..5 walls)."""
    t, face = np.full(d.shape[1:], np.inf, np.float32), np.zeros(d.shape[1:], np.int64)
    with np.errstate(divide="ignore"):
        for axis, first in ((0, 2), (1, 0), (2, 4)):  # x walls 2/3, floor/ceiling 0/1, z walls 4/5
            pos = d[axis] > 0
            # gap to the exit plane / speed towards it: +inf (never) for a ray parallel to it
            ta = np.where(pos, room[axis] - o[axis], o[axis]) / np.abs(d[axis])
            closer = ta < t
            t, face = np.where(closer, ta, t), np.where(closer, first + pos, face)
    return t, face


def render(scene: Scene, cam: Camera, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One view: uint8 RGB (H, W, 3) and float32 z-depth in metres (H, W)."""
    o, d = cam.pos, cam.rays()
    t, ids = _hit_room(scene.room, o, d)
    for k, obj in enumerate(scene.objects):  # nearest hit wins: occlusion
        if (win := cam.window(obj.corners())) is None:
            continue
        tk, tw, iw = obj.hit(o, d[:, win[0], win[1]]), t[win], ids[win]
        closer = tk < tw
        tw[closer], iw[closer] = tk[closer], 6 + k
    t, ids, d = t.ravel(), ids.ravel(), d.reshape(3, -1)
    p = o[:, None] + t * d
    normal, albedo = np.empty_like(p), np.empty_like(p)
    order = np.argsort(ids, kind="stable")
    groups, starts = np.unique(ids[order], return_index=True)
    for g, sel in zip(groups, np.split(order, starts[1:]), strict=True):
        if g < 6:
            normal[:, sel] = ROOM_NORMALS[g][:, None]
            albedo[:, sel] = _room_albedo(scene, int(g), p[:, sel], normal[:, sel])
        else:
            obj = scene.objects[g - 6]
            normal[:, sel] = obj.normal(p[:, sel])
            albedo[:, sel] = _albedo(obj.mat, p[:, sel], normal[:, sel], scene.noise)
    to_light = scene.light[:, None] - p
    dist2 = (to_light * to_light).sum(0)
    ndl = np.maximum((normal * to_light).sum(0) / np.sqrt(dist2), 0)
    lit = np.nonzero(ndl > 0)[0]
    if len(lit):  # hard shadows: does an object sit between the point and the lamp?
        so, sd = p[:, lit] + 1e-3 * normal[:, lit], to_light[:, lit]
        blocked = np.zeros(len(lit), bool)
        for obj in scene.objects:
            blocked |= obj.hit(so, sd) < 1.0
        ndl[lit[blocked]] = 0.0
    fill = sum(f * n for f, n in zip(scene.fill, normal, strict=True))  # not `@`: BLAS would spawn threads
    shade = 4.0 * ndl / (dist2 + 1.0) + 0.25 * np.maximum(fill, 0) + 0.12 + 0.06 * normal[1]
    radiance = albedo * (shade * _corner_shade(scene, p, ids) * scene.exposure)
    h, w = cam.size
    # gamma 2 (a sqrt is far cheaper than a power) and a little sensor noise
    srgb = np.sqrt(np.clip(radiance.T.reshape(h, w, 3), 0, 1)) * 255 + 1.2 * rng.standard_normal((h, w, 3), np.float32)
    return np.clip(srgb + 0.5, 0, 255).astype(np.uint8), t.reshape(h, w).astype(np.float32)


def _corner_shade(scene: Scene, p: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Darken room surfaces near the room's edges (a cheap ambient-occlusion cue)."""
    gap = np.minimum(p, scene.room[:, None] - p)  # distance to the nearer face of each axis
    # the smallest gap is the surface itself; the middle one is the distance to the nearest edge
    middle = gap.sum(0) - gap.min(0) - gap.max(0)
    return np.where(ids < 6, 1 - 0.35 * np.exp(-middle / 0.3), 1.0)


# ---- cameras ----------------------------------------------------------------------------------

def _free(scene: Scene, x: float, z: float, margin: float = 0.45) -> bool:
    w, _, d = scene.room
    inside = margin <= x <= w - margin and margin <= z <= d - margin
    return inside and all((x - fx) ** 2 + (z - fz) ** 2 > (r + margin) ** 2 for fx, fz, r in scene.footprints)


def _look_at_centre(scene: Scene, x: float, z: float, rng: np.random.Generator) -> float:
    return math.atan2(scene.room[0] / 2 - x, scene.room[2] / 2 - z) + rng.uniform(-0.5, 0.5)


def camera_path(scene: Scene, seed: int, index: int, views: int, motion: str) -> list[tuple]:
    """``views`` poses ``(pos, yaw, pitch, roll)``: jitter around one pose, or a walk + pan."""
    rng = np.random.default_rng([seed, index, GENERATOR_VERSION, 1])
    w, h, d = scene.room
    start = None
    for _ in range(200):
        x, z = rng.uniform(0, w), rng.uniform(0, d)
        if _free(scene, x, z):
            start = (x, z)
            break
    if start is None:  # crowded room: stand at the freest spot on a coarse grid
        grid = [(x, z) for x in np.linspace(0.5, w - 0.5, 9) for z in np.linspace(0.5, d - 0.5, 9)]
        start = max(grid, key=lambda q: min([math.hypot(q[0] - fx, q[1] - fz) - r for fx, fz, r in scene.footprints], default=9))
    y, yaw = rng.uniform(1.1, 1.7), _look_at_centre(scene, *start, rng)
    pitch = -rng.uniform(0.08, 0.35)
    if motion == "jitter":
        poses = []
        for v in range(views):
            vr = np.random.default_rng([seed, index, GENERATOR_VERSION, 2, v])
            dx, dy, dz = vr.normal(0, 0.04, 3)
            x, z = (start[0] + dx, start[1] + dz) if _free(scene, start[0] + dx, start[1] + dz, 0.3) else start
            poses.append((np.array([x, y + dy, z]), yaw + vr.normal(0, 0.035), pitch + vr.normal(0, 0.025), vr.normal(0, 0.015)))
        return poses
    if motion != "drift":
        raise ValueError(f"unknown motion {motion!r}; valid: {MOTIONS}")
    end = start
    for _ in range(200):  # a straight walk of 1-2 m that stays clear of the furniture
        ang, length = rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 2.0)
        cand = (start[0] + length * math.sin(ang), start[1] + length * math.cos(ang))
        if all(_free(scene, start[0] + s * (cand[0] - start[0]), start[1] + s * (cand[1] - start[1]), 0.35)
               for s in np.linspace(0, 1, 12)):
            end = cand
            break
    pan, tilt = rng.choice([-1, 1]) * rng.uniform(0.7, 1.4), rng.uniform(-0.1, 0.1)
    poses = []
    for v in range(views):
        s = v / max(views - 1, 1)
        x, z = start[0] + s * (end[0] - start[0]), start[1] + s * (end[1] - start[1])
        poses.append((np.array([x, y + 0.05 * math.sin(np.pi * s), z]), yaw + s * pan, pitch + s * tilt, 0.0))
    return poses


# ---- writing ----------------------------------------------------------------------------------

def _render_scene(args: tuple) -> None:
    out_dir, index, views, size, seed, motion = args
    scene = make_scene(seed, index)
    for v, (pos, yaw, pitch, roll) in enumerate(camera_path(scene, seed, index, views, motion)):
        cam = Camera.make(pos, yaw, pitch, roll, size)
        rgb, depth = render(scene, cam, np.random.default_rng([seed, index, GENERATOR_VERSION, 3, v]))
        name = f"sample_{index * views + v:06d}"
        Image.fromarray(rgb).save(out_dir / f"{name}_rgb.png", compress_level=1)
        np.save(out_dir / f"{name}_depth.npy", depth)


def _check_args(scenes: int, views: int, size: tuple[int, int], motion: str) -> tuple[int, int]:
    if scenes < 1 or views < 1:
        raise ValueError(f"need scenes >= 1 and views >= 1, got scenes={scenes}, views={views}")
    h, w = (int(v) for v in size)
    if h < 8 or w < 8:
        raise ValueError(f"image size must be at least 8x8, got {size}")
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; valid: {MOTIONS}")
    return h, w


def generate(out_dir: Path, *, scenes: int, views: int, size: tuple[int, int] = (426, 560), seed: int = 0,
             motion: str = "jitter", workers: int = 1) -> Path:
    """Render ``scenes * views`` items into ``out_dir`` (new or empty) in the competition layout.

    Writes ``sample_NNNNNN_rgb.png`` (uint8 RGB), ``sample_NNNNNN_depth.npy`` (float32 metres),
    ``train_list.txt`` and ``scenes.csv`` (``item,scene``). Items of scene ``s`` are numbered
    ``s * views .. s * views + views - 1``. ``workers > 1`` renders scenes in a process pool;
    the bytes do not depend on it.
    """
    size = _check_args(scenes, views, size, motion)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: output folder exists and is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(out_dir, s, views, size, seed, motion) for s in range(scenes)]
    if workers > 1 and scenes > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, scenes)) as pool:
            list(pool.map(_render_scene, jobs))
    else:
        for job in jobs:
            _render_scene(job)
    names = [f"sample_{i:06d}" for i in range(scenes * views)]
    (out_dir / "train_list.txt").write_text("".join(f"{n}_rgb.png {n}_depth.npy\n" for n in names))
    (out_dir / "scenes.csv").write_text("item,scene\n" + "".join(f"{n}_rgb.png,{i // views}\n" for i, n in enumerate(names)))
    return out_dir


def cache_key(*, scenes: int, views: int, size: tuple[int, int], seed: int, motion: str) -> str:
    h, w = size
    return f"v{GENERATOR_VERSION}-{scenes}x{views}-{h}x{w}-seed{seed}-{motion}"


def _complete(folder: Path, n: int) -> bool:
    lst = folder / "train_list.txt"
    if not (lst.is_file() and (folder / "scenes.csv").is_file()):
        return False
    lines = lst.read_text().split()
    return len(lines) == 2 * n and all((folder / f).is_file() for f in lines)


def ensure_synthetic(cache_root: Path, *, scenes: int, views: int, size: tuple[int, int] = (426, 560), seed: int = 0,
                     motion: str = "jitter", workers: int = 1) -> Path:
    """The synthetic dataset for these parameters under ``cache_root``, generated once.

    Renders into a temp sibling folder and renames it into place, so a crash never leaves a
    half-written dataset under the final name, and concurrent callers agree on one copy.
    """
    size = _check_args(scenes, views, size, motion)
    final = Path(cache_root) / cache_key(scenes=scenes, views=views, size=size, seed=seed, motion=motion)
    if _complete(final, scenes * views):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        generate(tmp, scenes=scenes, views=views, size=size, seed=seed, motion=motion, workers=workers)
        if final.exists() and not _complete(final, scenes * views):
            shutil.rmtree(final)  # a broken copy left by something else: replace it
        try:
            os.rename(tmp, final)
        except OSError:
            if not _complete(final, scenes * views):  # another process won the race otherwise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grid.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    ap.add_argument("--scenes", type=int, default=10)
    ap.add_argument("--views", type=int, default=8, help="views per scene")
    ap.add_argument("--size", type=parse_size, default=(426, 560), help="HxW, default 426x560")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--motion", choices=MOTIONS, default="jitter")
    ap.add_argument("--workers", type=int, default=1, help="processes rendering scenes in parallel")
    args = ap.parse_args(argv)
    try:
        out = generate(args.out, scenes=args.scenes, views=args.views, size=args.size, seed=args.seed,
                       motion=args.motion, workers=args.workers)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.scenes * args.views} items to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
