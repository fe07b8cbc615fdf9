"""Plain regions whose outline moves: the motion evidence of a uniform object lies on its outline only.

Inside a region of one flat colour, a moving or pulsing object looks the same whatever its motion, so every
motion test (photometric residual, epipolar distance of the flow) sees it at its outline only: a ring of
evidence around an empty middle, which a per-pixel vote then drops as a sliver. A plain (untextured) region
whose surrounding band carries motion evidence almost all round is taken as moving whole, band included.
Regions cut by the frame border have no whole outline to judge, and regions larger than a small share of
the frame (walls, sky, floor) are left to the per-pixel votes.

Shapes: evidence, textured (H, W) bool -> (H, W) bool.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from ..errors import InputError

AREA_SHARE = (0.0046, 0.05)  # share of the frame a region judged by its outline covers (~600 to 6500 px at 480x270)
# the share of its outline with evidence that takes a plain region whole: the plain faces of static boxes beside
# moving objects get 0.47-0.53 from depth errors at their edges (handheld-room, rig-room), moving ones mostly more
MIN_COVER = 0.55


def outlined_regions(evidence: np.ndarray, textured: np.ndarray, band: int, min_cover: float = MIN_COVER,
                     area_share: tuple[float, float] = AREA_SHARE) -> np.ndarray:
    """The plain regions (4-connected untextured pixels, not touching the frame border, covering an
    ``area_share`` (min, max) of the frame) that have ``evidence`` on at least ``min_cover`` of their band
    (the textured pixels within ``band`` px, each counted for its nearest region), grown by that band.
    evidence (H, W) bool: pixels with motion evidence; textured (H, W) bool -> (H, W) bool."""
    evidence, textured = np.asarray(evidence, bool), np.asarray(textured, bool)
    if evidence.ndim != 2 or evidence.shape != textured.shape:
        raise InputError(f"outlined_regions: 'evidence' and 'textured' must be one (H, W) shape, got "
                         f"{evidence.shape} and {textured.shape}")
    if band < 1:
        raise InputError(f"outlined_regions: 'band' must be at least 1 pixel, got {band}")
    count, labels = cv2.connectedComponents((~textured).astype(np.uint8), connectivity=4)
    if count <= 1:
        return np.zeros_like(evidence)
    # each textured pixel belongs to the band of its nearest plain region when it lies within `band` of it
    dist, (iy, ix) = ndimage.distance_transform_edt(textured, return_indices=True)
    owner = np.where(textured & (dist <= band), labels[iy, ix], 0).ravel()
    band_size = np.bincount(owner, minlength=count)
    band_hits = np.bincount(owner, weights=evidence.ravel(), minlength=count)
    area = np.bincount(labels.ravel(), minlength=count)
    cut = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    keep = band_hits >= min_cover * np.maximum(band_size, 1)  # no band: no hits, never kept
    keep &= (area >= area_share[0] * labels.size) & (area <= area_share[1] * labels.size)
    keep[cut] = False
    keep[0] = False  # label 0: the textured pixels (and, as owner, pixels in no band)
    return keep[labels] | keep[owner].reshape(labels.shape)
