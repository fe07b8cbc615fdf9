"""Scene layouts for the synthetic suites: a closed textured room, static objects at several depths and 1-3
moving objects (rigid, articulated, affine non-rigid), as functions of normalised time tau in [0, 1].

World frame: y up, floor at y = 0, cameras look roughly along +z at ``World.target``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .synthetic_raycast import SHAPES, Look, Snapshot
from .synthetic_textures import texture_atlas

LAYOUTS = ("room", "garden", "studio", "hall")


def T(x, y, z):
    """Translation (4x4)."""
    m = np.eye(4)
    m[:3, 3] = (x, y, z)
    return m


def S(x, y=None, z=None):
    """Scale (4x4); one argument scales uniformly."""
    return np.diag([x, x if y is None else y, x if z is None else z, 1.0])


def R(axis: str, angle: float):
    """Rotation by ``angle`` radians about world axis 'x', 'y' or 'z' (4x4)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m = np.eye(4)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def fixed(matrix: np.ndarray) -> Callable[[float], np.ndarray]:
    """Pose of a static primitive."""
    return lambda tau: matrix


@dataclass
class PrimSpec:
    """shape in SHAPES; pose(tau) -> (4, 4) local -> world; textures: 1 spec or 6 (one per local face
    2 * axis + (sign > 0)); tile: world size of one texture repeat."""

    shape: str
    pose: Callable[[float], np.ndarray]
    textures: tuple[str, ...]
    tile: float
    dynamic: bool = False


class World:
    """Primitives and appearance of one layout; cameras look at ``target`` from ``radius`` away at camera
    height ``height`` (azimuth 0 looks along +z, from the reference ``eye`` that picks texture filters)."""

    def __init__(self, prims: list[PrimSpec], lights: tuple, target, radius: float, height: float, seed: int):
        for p in prims:
            if p.shape not in SHAPES:
                raise ValueError(f"unknown shape {p.shape!r}; allowed: {SHAPES}")
        self.prims, self.target, self.radius, self.height = prims, np.asarray(target, np.float64), radius, height
        specs = tuple(dict.fromkeys(s for p in prims for s in p.textures))
        self.eye = self.target + np.array([0.0, height - self.target[1], -radius])
        self.look = Look(list(texture_atlas(specs, seed)), *lights, torch.tensor(self.eye, dtype=torch.float32))
        self.tex_ids = torch.tensor([[specs.index(s) for s in (p.textures * 6)[:6]] for p in prims])
        rest = self.transforms(0.0)[:, :3, :3].norm(dim=1)
        self.tex_scale = rest / torch.tensor([[p.tile] for p in prims], dtype=torch.float32)
        self.dynamic = torch.tensor([p.dynamic for p in prims])
        self.dynamic_ids = [k for k, p in enumerate(prims) if p.dynamic]
        self.static_ids = [k for k, p in enumerate(prims) if not p.dynamic]

    def transforms(self, tau: float) -> torch.Tensor:
        """All local -> world transforms at normalised time tau. -> (M, 4, 4) float32."""
        return torch.from_numpy(np.stack([p.pose(tau) for p in self.prims])).float()

    def snapshot(self, tau: float) -> Snapshot:
        return Snapshot([p.shape for p in self.prims], self.transforms(tau), self.tex_ids, self.tex_scale)


def _lights(rng: np.random.Generator) -> tuple:
    """(directions (2, 3), colours (2, 3), ambient (3,)): a warm key light from above and a cool fill."""
    key = np.array([0.4, 1.0, -0.6]) + rng.uniform(-0.2, 0.2, 3)
    fill = np.array([-0.7, 0.5, 0.3]) + rng.uniform(-0.2, 0.2, 3)
    dirs = np.stack([key / np.linalg.norm(key), fill / np.linalg.norm(fill)])
    return (torch.tensor(dirs, dtype=torch.float32),
            torch.tensor([[0.65, 0.62, 0.55], [0.25, 0.28, 0.35]], dtype=torch.float32),
            torch.tensor([0.35, 0.35, 0.38], dtype=torch.float32))


def _room(center, half, faces, tile) -> PrimSpec:
    """Closed box seen from inside; faces: (-x, +x, floor, ceiling, -z behind cameras, +z back wall)."""
    return PrimSpec("box", fixed(T(*center) @ S(*half)), tuple(faces), tile)


def _arm(base, length, phase, speed, textures, tile=0.4) -> list[PrimSpec]:
    """Two-segment articulated arm in the x-y plane: shoulder at ``base`` and an elbow, both swinging."""
    def shoulder(tau):
        w = 2 * np.pi * speed * tau
        return T(*base) @ R("y", 0.5 * np.sin(w)) @ R("z", 0.6 * np.sin(w + phase))

    def elbow(tau):
        return shoulder(tau) @ T(0, length, 0) @ R("z", 0.9 * np.sin(2 * np.pi * speed * tau + phase + 1.2) - 0.4)

    thick = 0.09
    return [PrimSpec("box", lambda tau: shoulder(tau) @ T(0, length / 2, 0) @ S(thick, length / 2, thick),
                     textures, tile, True),
            PrimSpec("sphere", lambda tau: shoulder(tau) @ T(0, length, 0) @ S(1.4 * thick), textures, tile, True),
            PrimSpec("cylinder", lambda tau: elbow(tau) @ T(0, 0.45 * length, 0) @ S(thick, 0.45 * length, thick),
                     textures, tile, True)]


def _breathing(center, radii, speed, textures, tile=0.5) -> PrimSpec:
    """Ellipsoid whose three radii pulse out of phase (non-rigid) while it slowly turns."""
    def pose(tau):
        w = 2 * np.pi * speed * tau
        pulse = [1 + 0.22 * np.sin(w), 1 + 0.22 * np.sin(w + 2.1), 1 + 0.22 * np.sin(w + 4.2)]
        return T(*center) @ R("y", 0.8 * tau) @ S(*(np.asarray(radii) * pulse))
    return PrimSpec("sphere", pose, textures, tile, True)


def _sway(base, radius, height, speed, textures, tile=0.5) -> PrimSpec:
    """Cylinder rooted at ``base`` whose top sways by a shear (non-rigid) and that squashes a little."""
    def pose(tau):
        w = 2 * np.pi * speed * tau
        shear = np.eye(4)
        shear[0, 1], shear[2, 1] = 0.35 * np.sin(w), 0.2 * np.sin(0.5 * w)
        return T(*base) @ shear @ T(0, height / 2, 0) @ S(radius, height / 2 * (1 + 0.1 * np.cos(w)), radius)
    return PrimSpec("cylinder", pose, textures, tile, True)


def _tumble(path, size, spin, textures, shape="box", tile=0.5) -> PrimSpec:
    """Rigid object moving along ``path(tau) -> xyz`` and spinning ``spin`` turns about a tilted axis."""
    return PrimSpec(shape, lambda tau: T(*path(tau)) @ R("x", 0.4) @ R("y", 2 * np.pi * spin * tau)
                    @ R("x", -0.4) @ S(*np.broadcast_to(size, 3)), textures, tile, True)


def _room_layout(rng):
    j = lambda: rng.uniform(-0.1, 0.1)  # noqa: E731 - small seeded jitter of static positions
    prims = [
        _room((0, 1.5, 2.5), (4, 1.5, 6.5),
              ["brick:0.9,0.6,0.5", "coffee", "wood", "noise", "gravel", "astronaut"], 1.5),
        PrimSpec("box", fixed(T(-1.3 + j(), 0.4, 4.2) @ R("y", 0.35) @ S(0.6, 0.4, 0.45)), ("wood",), 0.8),
        PrimSpec("sphere", fixed(T(-1.2, 0.95, 4.2 + j()) @ S(0.15)), ("chelsea",), 0.3),
        PrimSpec("sphere", fixed(T(1.7 + j(), 0.5, 5.6) @ S(0.5)), ("rocket",), 0.8),
        PrimSpec("cylinder", fixed(T(2.6, 1.5, 7.5 + j()) @ S(0.35, 1.5, 0.35)), ("grass:0.6,0.7,0.9",), 0.7),
        PrimSpec("box", fixed(T(-2.6, 0.6, 7.6) @ R("y", -0.3) @ S(0.6)), ("checker",), 0.6),
        PrimSpec("box", fixed(T(-2.5, 1.5, 7.5) @ R("y", 0.2) @ S(0.3)), ("stripes",), 0.5),
        _tumble(lambda tau: (-1.0 + 2.0 * tau, 1.0 + 0.25 * np.sin(np.pi * tau), 3.2), 0.28, 0.6,
                ("immunohistochemistry",)),
        _breathing((0.7, 0.75, 4.6), (0.35, 0.55, 0.35), 1.5, ("dots",)),
    ]
    return prims, np.array([0.0, 0.9, 4.5]), 5.5, 1.4


def _garden_layout(rng):
    j = lambda: rng.uniform(-0.15, 0.15)  # noqa: E731
    bark, leaves = "gravel:0.55,0.4,0.25", "grass:0.35,0.7,0.3"
    prims = [
        _room((0, 2.5, 3.0), (6, 2.5, 8), ["moon:0.7,0.8,1.0", "coffee", "grass:0.45,0.75,0.35",
                                           "noise", "moon:0.8,0.85,1.0", "rocket"], 2.0),
    ]
    for x, z, h in ((-2.8, 6.5, 1.6), (2.9, 8.0, 2.0), (-0.6, 9.5, 1.8)):
        prims.append(PrimSpec("cylinder", fixed(T(x + j(), h / 2, z) @ S(0.22, h / 2, 0.22)), (bark,), 0.6))
        prims.append(PrimSpec("sphere", fixed(T(x, h + 0.4, z) @ S(0.75, 0.6, 0.75)), (leaves,), 0.8))
    prims += [
        PrimSpec("box", fixed(T(1.6, 0.35, 3.8 + j()) @ R("y", 0.5) @ S(0.35)), ("wood",), 0.7),
        PrimSpec("box", fixed(T(-1.9, 0.3, 3.4) @ R("y", -0.2) @ S(0.5, 0.3, 0.3)), ("brick:0.8,0.5,0.4",), 0.6),
        PrimSpec("sphere", fixed(T(0.9 + j(), 0.15, 6.0) @ S(0.5, 0.25, 0.4)), ("gravel:0.6,0.6,0.6",), 0.5),
        *_arm((-0.5, 0.0, 4.8), 0.8, 0.3, 1.0, ("coffee",)),
        _tumble(lambda tau: (0.3 + 1.2 * tau, 0.3 + 0.9 * abs(np.sin(2.5 * np.pi * tau)), 3.6), 0.3, 1.0,
                ("astronaut",), shape="sphere"),
    ]
    return prims, np.array([0.0, 0.9, 5.0]), 6.0, 1.5


def _studio_layout(rng):
    j = lambda: rng.uniform(-0.1, 0.1)  # noqa: E731
    prims = [
        _room((0, 1.6, 2.0), (4.5, 1.6, 6.0), ["stripes", "chelsea", "checker", "noise", "noise", "astronaut"], 1.2),
        PrimSpec("cylinder", fixed(T(-1.5 + j(), 0.35, 4.5) @ S(0.3, 0.35, 0.3)), ("moon:0.9,0.9,0.8",), 0.6),
        PrimSpec("cylinder", fixed(T(1.6, 0.45, 5.4 + j()) @ S(0.35, 0.45, 0.35)), ("camera:0.8,0.8,1.0",), 0.6),
        PrimSpec("box", fixed(T(0.0, 1.6, 7.9) @ S(1.2, 0.8, 0.05)), ("rocket",), 2.4),
        PrimSpec("sphere", fixed(T(2.5, 0.6, 6.8 + j()) @ S(0.6)), ("wood",), 0.8),
        PrimSpec("box", fixed(T(-2.7, 0.5, 6.5) @ R("y", 0.6) @ S(0.5)), ("dots",), 0.6),
        PrimSpec("box", fixed(T(1.6, 1.15, 5.4) @ R("y", 0.3) @ S(0.25)), ("coffee",), 0.5),
        _sway((0.0, 0.0, 5.0), 0.2, 1.3, 1.0, ("grass:0.9,0.5,0.7",)),
        _tumble(lambda tau: (-1.5 + 0.9 * np.cos(2 * np.pi * tau), 1.2, 4.5 + 0.6 * np.sin(2 * np.pi * tau)), 0.22,
                1.0, ("immunohistochemistry",), shape="sphere"),
        _tumble(lambda tau: (1.0, 0.8 + 0.2 * tau, 3.5), (0.3, 0.15, 0.2), 0.75, ("checker",)),
    ]
    return prims, np.array([0.0, 0.9, 4.8]), 5.5, 1.4


def _hall_layout(rng):
    j = lambda: rng.uniform(-0.1, 0.1)  # noqa: E731
    prims = [
        _room((0, 1.75, 6.0), (3.8, 1.75, 10.0), ["brick:0.7,0.7,0.8", "brick:0.8,0.7,0.6", "checker", "noise",
                                                 "gravel", "coffee"], 1.4),
    ]
    for k, z in enumerate((3.0, 6.5, 10.0, 13.5)):
        prims.append(PrimSpec("cylinder", fixed(T(-2.6, 1.75, z + j()) @ S(0.25, 1.75, 0.25)),
                              ("moon:1.0,0.9,0.7",), 0.6))
        prims.append(PrimSpec("box", fixed(T(2.5, 0.4 + 0.2 * k, z + 1.0) @ R("y", 0.4 * k) @ S(0.4)),
                              (("wood", "dots", "chelsea", "stripes")[k],), 0.7))
    prims += [
        PrimSpec("sphere", fixed(T(0.8 + j(), 0.4, 8.5) @ S(0.4)), ("rocket",), 0.7),
        *_arm((-0.6, 0.6, 4.5), 0.7, 1.1, 0.8, ("astronaut",)),
        PrimSpec("box", fixed(T(-0.6, 0.3, 4.5) @ S(0.3)), ("gravel:0.7,0.6,0.5",), 0.5),
        _breathing((1.0, 0.9, 6.5), (0.4, 0.6, 0.4), 1.2, ("chelsea",)),
    ]
    return prims, np.array([0.0, 1.0, 6.0]), 6.5, 1.5


_BUILDERS = {"room": _room_layout, "garden": _garden_layout, "studio": _studio_layout, "hall": _hall_layout}


def build_world(layout: str, seed: int) -> World:
    """The named layout with seeded jitter, procedural textures and lights."""
    rng = np.random.default_rng([seed, LAYOUTS.index(layout)])
    prims, target, radius, height = _BUILDERS[layout](rng)
    return World(prims, _lights(rng), target, radius, height, seed)
