"""Textures for the synthetic scenes: scikit-image's bundled photographs plus seeded procedural patterns,
each turned into a mip pyramid (float32 torch, (3, h, w) per level, halving down to a few texels)."""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

TEX_RES = 256
# Grey photographs get a colour tint so that every surface has chroma.
NATURAL = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
           "brick", "grass", "gravel", "camera", "moon")
PROCEDURAL = ("checker", "stripes", "noise", "wood", "dots")


def _square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return cv2.resize(img[top:top + s, left:left + s], (TEX_RES, TEX_RES), interpolation=cv2.INTER_AREA)


def natural(name: str, tint=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A bundled scikit-image photograph, centre-cropped to TEX_RES^2. -> (TEX_RES, TEX_RES, 3) float32."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
    if img.ndim == 2:
        img = img[..., None] * np.asarray(tint, np.float32)
    return np.clip(_square(img[..., :3]), 0, 1).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, cells: int, channels: int) -> np.ndarray:
    """Periodic smooth noise in [0, 1]: random cell values, bicubic upsampled. -> (TEX_RES, TEX_RES, C)."""
    coarse = rng.random((cells, cells, channels)).astype(np.float32)
    big = cv2.resize(np.tile(coarse, (3, 3, 1)), (3 * TEX_RES, 3 * TEX_RES), interpolation=cv2.INTER_CUBIC)
    return np.clip(big.reshape(3 * TEX_RES, 3 * TEX_RES, channels)[TEX_RES:2 * TEX_RES, TEX_RES:2 * TEX_RES], 0, 1)


def procedural(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A seeded pattern with random colours. kind in PROCEDURAL -> (TEX_RES, TEX_RES, 3) float32."""
    c1, c2 = rng.uniform(0.15, 0.95, size=(2, 3)).astype(np.float32)
    y, x = np.mgrid[0:TEX_RES, 0:TEX_RES].astype(np.float32) / TEX_RES
    if kind == "checker":
        n = int(rng.integers(4, 9))
        t = ((np.floor(x * n) + np.floor(y * n)) % 2)[..., None]
    elif kind == "stripes":
        n = int(rng.integers(3, 8))
        t = (0.5 + 0.5 * np.sin(2 * np.pi * n * (x + 0.3 * y)))[..., None]
    elif kind == "noise":
        img = 0.6 * _smooth_noise(rng, 6, 3) + 0.4 * _smooth_noise(rng, 24, 3)
        return (0.15 + 0.8 * img).astype(np.float32)
    elif kind == "wood":
        warp = _smooth_noise(rng, 5, 1)[..., 0]
        r = np.hypot(x - 0.3, y + 0.4)
        t = (0.5 + 0.5 * np.sin(2 * np.pi * (10 * r + 2 * warp)))[..., None] ** 2
    elif kind == "dots":
        n = int(rng.integers(3, 7))
        d = np.hypot((x * n) % 1 - 0.5, (y * n) % 1 - 0.5)
        t = (d < 0.3).astype(np.float32)[..., None]
    else:
        raise ValueError(f"unknown procedural texture {kind!r}; allowed: {PROCEDURAL}")
    return (c1 * (1 - t) + c2 * t).astype(np.float32)


def make_texture(spec: str, rng: np.random.Generator) -> np.ndarray:
    """``spec``: a NATURAL name (optionally ``name:r,g,b`` tint) or a PROCEDURAL kind."""
    name, _, tint = spec.partition(":")
    if name in NATURAL:
        return natural(name, tuple(float(c) for c in tint.split(",")) if tint else (1.0, 1.0, 1.0))
    return procedural(name, rng)


def pyramid(img: np.ndarray) -> list[torch.Tensor]:
    """Gaussian mip pyramid (5-tap pyrDown per level), down to 4 texels. img (h, w, 3) -> levels (3, h_l, w_l)."""
    levels = [img]
    while min(levels[-1].shape[:2]) > 4:
        levels.append(cv2.pyrDown(levels[-1]))
    return [torch.from_numpy(np.ascontiguousarray(lv.transpose(2, 0, 1))) for lv in levels]


@functools.lru_cache(maxsize=16)
def texture_atlas(specs: tuple[str, ...], seed: int) -> tuple[torch.Tensor, ...]:
    """Mip levels of all ``specs`` stacked vertically: level l is (3, T * s_l, s_l), s_l = TEX_RES / 2^l.
    Procedural textures are drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    pyramids = [pyramid(make_texture(s, rng)) for s in specs]
    return tuple(torch.cat(levels, 1) for levels in zip(*pyramids))
