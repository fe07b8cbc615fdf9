"""Click segmenters behind one interface: SAM (segment-anything) when a model is loaded, GrabCut otherwise.

A segmenter edits a frame's dynamic mask from clicks: ``segment(frame_idx, image, points, labels, prior)``
returns the prior with the region under the include points (label 1) added and the region under the
exclude points (label 0) removed; prior components no click touches are kept as they are.

Shapes: image (H, W, 3) float in [0, 1] (or uint8), points (P, 2) pixel (x, y) = (column, row), labels (P,)
int 1 include / 0 exclude, prior_mask (H, W) bool or None -> (H, W) bool.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Protocol

import cv2
import numpy as np

from ..errors import InputError
from ..videoio import to_uint8


class Segmenter(Protocol):
    name: str

    def segment(self, frame_idx: int, image: np.ndarray, points: np.ndarray, labels: np.ndarray,
                prior_mask: np.ndarray | None) -> np.ndarray:
        """Edited mask of frame ``frame_idx`` (shapes in the module doc)."""


class SamSegmenter:
    """segment-anything ``SamPredictor`` with one image embedding per frame kept in an LRU cache.

    Exclude points each remove the SAM segment under them (prompted inside the box of the prior component
    they hit); include points, with the exclude points as negatives and the box of the prior component they
    hit, add one SAM segment. Of SAM's three candidate masks the best scored one wins (plus its IoU with
    the prior component when there is one).
    """

    name = "sam"

    def __init__(self, sam_model, cache_size: int = 8):
        self.model = sam_model
        self.cache_size = max(1, cache_size)
        self._cache: OrderedDict = OrderedDict()

    def segment(self, frame_idx, image, points, labels, prior_mask=None):
        img = to_uint8_rgb(image)
        points, labels = check_prompt(points, labels, img.shape[:2])
        prior = _prior(prior_mask, img.shape[:2])
        if len(points) == 0:
            return prior
        predictor = self._predictor(frame_idx, img)
        out = prior.copy()
        for point in points[labels == 0]:
            comp = components_at(prior, point[None])
            out &= ~self._predict(predictor, point[None], np.ones(1, int), comp)
        include = labels == 1
        if include.any():
            comp = components_at(prior, points[include])
            out |= self._predict(predictor, points, labels, comp)
        return out

    def snap(self, frame_idx: int, image: np.ndarray, mask: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
        """Replace each component of ``mask`` (H, W) bool by the SAM segment that its box and interior point
        prompt, when they agree (IoU >= ``min_iou``). -> (H, W) bool."""
        img = to_uint8_rgb(image)
        predictor = self._predictor(frame_idx, img)
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        out = mask.copy()
        for c in range(1, count):
            comp = labels == c
            seg = self._predict(predictor, interior_point(comp)[None], np.ones(1, int), comp)
            if iou(seg, comp) >= min_iou:
                out = (out & ~comp) | seg
        return out

    def _predictor(self, frame_idx: int, img: np.ndarray):
        """SamPredictor with this frame's embedding; keyed on index and content so a changed image is
        never answered from a stale embedding."""
        from segment_anything import SamPredictor

        key = (int(frame_idx), hashlib.blake2b(img.tobytes(), digest_size=16).hexdigest())
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        predictor = SamPredictor(self.model)
        predictor.set_image(img)
        self._cache[key] = predictor
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return predictor

    @staticmethod
    def _predict(predictor, points: np.ndarray, labels: np.ndarray, prior_comp: np.ndarray) -> np.ndarray:
        """Best of SAM's multimask outputs for these points, boxed by ``prior_comp`` when it is not empty."""
        box = bbox(prior_comp) if prior_comp.any() else None
        masks, scores, _ = predictor.predict(point_coords=points.astype(np.float32), point_labels=labels,
                                             box=None if box is None else np.asarray(box, np.float32),
                                             multimask_output=True)
        rank = scores + (np.array([iou(m, prior_comp) for m in masks]) if box is not None else 0)
        return masks[int(np.argmax(rank))].astype(bool)


class ClassicalSegmenter:
    """GrabCut seeded by the clicks and the prior, around what the clicks touch.

    Include points are definite foreground disks, exclude points definite background disks. The prior
    component under an exclude point is dropped (with include clicks present it becomes probable
    background, so GrabCut keeps the parts whose colours match the included object); prior components
    under an include point are probable foreground, and an include point off the prior starts a
    probable-foreground disk of radius ``reach`` (fraction of the image size). GrabCut runs on a crop
    ``reach`` around these seeds; everything farther is background, and cut regions not connected to an
    include click are dropped. Fallback when GrabCut cannot run (no foreground or background sample): the
    prior minus the excluded components plus the include disks.
    """

    name = "classical"

    def __init__(self, iterations: int = 5, reach: float = 0.2, disk: float = 0.012):
        self.iterations = iterations
        self.reach = reach
        self.disk = disk

    def segment(self, frame_idx, image, points, labels, prior_mask=None):
        img = to_uint8_rgb(image)
        h, w = img.shape[:2]
        points, labels = check_prompt(points, labels, (h, w))
        prior = _prior(prior_mask, (h, w))
        if len(points) == 0:
            return prior
        reach = self.reach * max(h, w)
        inc_disk = disks(points[labels == 1], (h, w), max(2, round(self.disk * max(h, w))))
        exc_disk = disks(points[labels == 0], (h, w), max(2, round(self.disk * max(h, w))))
        removed = components_at(prior, points[labels == 0])
        edited = components_at(prior, points[labels == 1]) & ~removed
        fallback = (prior & ~removed & ~exc_disk) | inc_disk
        if not (inc_disk | edited).any():
            return fallback
        # an include click off the prior marks an object of unknown extent: probable foreground around it
        kept = prior & ~removed
        fresh = disks(points[(labels == 1) & ~kept[_rows_cols(points)]], (h, w), round(reach))
        seeds = inc_disk | edited | removed | fresh
        roi = cv2.distanceTransform((~seeds).astype(np.uint8), cv2.DIST_L2, 3) <= reach
        gc = np.full((h, w), cv2.GC_BGD, np.uint8)
        gc[roi] = cv2.GC_PR_BGD
        gc[kept | fresh] = cv2.GC_PR_FGD
        gc[inc_disk] = cv2.GC_FGD
        gc[exc_disk] = cv2.GC_BGD
        y0, y1, x0, x1 = _crop(roi, pad=2)
        sub = gc[y0:y1, x0:x1].copy()
        try:
            cv2.grabCut(np.ascontiguousarray(img[y0:y1, x0:x1, ::-1]), sub, None, np.zeros((1, 65)),
                        np.zeros((1, 65)), self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # too few samples of one class for its colour model
            return fallback
        cut = np.zeros((h, w), bool)
        cut[y0:y1, x0:x1] = (sub == cv2.GC_FGD) | (sub == cv2.GC_PR_FGD)
        cut = components_touching(cut, inc_disk | edited)  # drop look-alike blobs away from the clicks
        return ((prior & ~seeds) | cut) & ~exc_disk


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] or uint8 -> (H, W, 3) uint8 RGB, contiguous."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise InputError(f"segmenter: image must be (H, W, 3), got {image.shape}")
    return np.ascontiguousarray(to_uint8(image))


def check_prompt(points, labels, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Validate clicks: points (P, 2) (x, y) inside the image, labels (P,) in {0, 1}."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1).astype(int)
    if len(points) != len(labels):
        raise InputError(f"segmenter: {len(points)} points but {len(labels)} labels")
    if not np.isin(labels, (0, 1)).all():
        raise InputError(f"segmenter: labels must be 1 (include) or 0 (exclude), got {sorted(set(labels))}")
    h, w = hw
    x, y = points[:, 0], points[:, 1]
    bad = ~np.isfinite(points).all(1) | (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
    if bad.any():
        raise InputError(f"segmenter: point {points[bad][0].tolist()} is outside the {w}x{h} image")
    return points, labels


def components_at(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Union of the 8-connected components of ``mask`` (H, W) that contain one of ``points`` (P, 2) (x, y)."""
    if len(points) == 0 or not mask.any():
        return np.zeros_like(mask, bool)
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    hit = labels[_rows_cols(points)]
    return np.isin(labels, hit[hit > 0])


def components_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Components of ``mask`` (H, W) bool that overlap ``seeds`` (H, W) bool -> (H, W) bool."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    hit = np.unique(labels[seeds & mask])
    return np.isin(labels, hit[hit > 0])


def disks(points: np.ndarray, hw: tuple[int, int], radius: int) -> np.ndarray:
    """(H, W) bool with a filled disk of ``radius`` around each point (P, 2) (x, y)."""
    out = np.zeros(hw, np.uint8)
    for x, y in np.round(points).astype(int):
        cv2.circle(out, (int(x), int(y)), int(radius), 1, thickness=-1)
    return out.astype(bool)


def interior_point(mask: np.ndarray) -> np.ndarray:
    """The pixel (x, y) of ``mask`` (H, W) farthest from its border -> (2,) float."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([x, y], float)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Box (x0, y0, x1, y1) of a non-empty (H, W) bool mask, inclusive pixel coordinates."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H, W) bool masks (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _crop(region: np.ndarray, pad: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = bbox(region)
    h, w = region.shape
    return max(0, y0 - pad), min(h, y1 + pad + 1), max(0, x0 - pad), min(w, x1 + pad + 1)


def _rows_cols(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ij = np.round(points).astype(int)
    return ij[:, 1], ij[:, 0]


def _prior(prior_mask, hw: tuple[int, int]) -> np.ndarray:
    if prior_mask is None:
        return np.zeros(hw, bool)
    prior = np.asarray(prior_mask)
    if prior.shape != tuple(hw):
        raise InputError(f"segmenter: prior_mask must have shape {tuple(hw)}, got {prior.shape}")
    return prior.astype(bool)
