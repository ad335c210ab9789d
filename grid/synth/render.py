"""Rendering synthetic scenes: procedural textures, a pinhole camera, ray casting with shading
and hard shadows, and the camera paths (``jitter``, ``drift``) through a scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grid.synth.scene import GENERATOR_VERSION, Material, Scene

HFOV_DEG = 60.0
MOTIONS = ("jitter", "drift")


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
