"""Click segmenters behind one interface: SAM (segment-anything) when a model is loaded, GrabCut otherwise.

A segmenter edits a frame's dynamic mask from clicks: ``segment(frame_idx, image, points, labels, prior, flow)``
returns the prior with the region under the include points (label 1) added and the region under the
exclude points (label 0) removed; prior components no click touches are kept as they are. ``flow`` (the
frame's optical flow to a neighbour) tells a moving object from its background where colour cannot.

Shapes: image (H, W, 3) float in [0, 1] (or uint8), points (P, 2) pixel (x, y) = (column, row), labels (P,)
int 1 include / 0 exclude, prior_mask (H, W) bool or None, flow (H, W, 2) or None -> (H, W) bool.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Protocol

import cv2
import numpy as np

from ..errors import InputError
from ..videoio import to_uint8
from .scale import REFERENCE_SIDE


class Segmenter(Protocol):
    name: str

    def segment(self, frame_idx: int, image: np.ndarray, points: np.ndarray, labels: np.ndarray,
                prior_mask: np.ndarray | None, flow: np.ndarray | None = None) -> np.ndarray:
        """Edited mask of frame ``frame_idx`` (shapes in the module doc)."""


class SamSegmenter:
    """segment-anything ``SamPredictor`` with one image embedding per frame kept in an LRU cache.

    Exclude points each remove the SAM segment under them (prompted inside the box of the prior component
    they hit); include points, with the exclude points as negatives and the box of the prior component they
    hit, add one SAM segment. Of SAM's three candidate masks the best scored one wins (plus its IoU with
    the prior component when there is one). SAM segments by appearance alone: ``flow`` is not used.
    """

    name = "sam"

    def __init__(self, sam_model, cache_size: int = 8):
        self.model = sam_model
        self.cache_size = max(1, cache_size)
        self._cache: OrderedDict = OrderedDict()

    def segment(self, frame_idx, image, points, labels, prior_mask=None, flow=None):
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
    """Colour region growing refined by GrabCut, one click at a time, never reaching far from the click.

    - An include point adds the object under it. Its colour object: the region of similar colour connected
      to the click (flood fill on a smoothed image loosened until the region leaks or exceeds ``max_object``
      of the image), refined by GrabCut in a band around that region (on texture, where the fill stalls,
      disks up to ``reach`` x the image size seed GrabCut instead, largest first); a cut that collapses or
      fills its whole band is refused, and the fill is the answer when none holds. With the frame's flow,
      the region moving like the click (the same flood fill on the flow, ``flow_tolerances`` px at 480 px,
      up to ``max_moving`` of the image) refined by GrabCut comes first, joined by the colour object only
      where the two agree (:meth:`object_at`); colour alone decides where the click moves like its
      surroundings, or where a plain-coloured object sits in a much larger region that moves alike. The
      prior is kept as it is (whether the click lands on it or not: a prior component can merge the object
      with false positives).
    - An exclude point removes the false part of the prior component it lands in: GrabCut with the component
      as probable foreground and the static surroundings (and the click) as background drops the parts that
      look like the surroundings; the dropped pieces connected to the click go, and the whole component when
      little of it is left. With the frame's flow, the part of the component that moves like the click goes
      as well, unless its colour is one GrabCut kept and the clicked part does not show (an object that moves
      like the wall under a slow camera); the part that moves otherwise stays, and so do dropped pieces that
      move with what GrabCut kept (:meth:`false_part`, :func:`moves_with`). Other components stay.
    Include disks of radius ``disk`` (fraction of the image size) always end in the mask, exclude disks never.
    """

    name = "classical"
    # an include click beside an object, whose motion does not tell it from its surroundings, adds a colour object
    # at most this many times that object's area
    EXTEND_AT_MOST = 2.0

    def __init__(self, iterations: int = 4, disk: float = 0.012, max_object: float = 0.05, reach: float = 0.2,
                 texture_radius: float = 0.02, tolerances: tuple[int, ...] = (4, 7, 10, 14, 19, 25, 32),
                 flow_tolerances: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0), max_moving: float = 0.25):
        self.iterations = iterations
        self.disk = disk
        self.max_object = max_object
        self.reach = reach
        self.texture_radius = texture_radius
        self.tolerances = tolerances
        self.flow_tolerances = flow_tolerances
        self.max_moving = max_moving  # a region that moves apart is trusted larger than one of similar colour

    def segment(self, frame_idx, image, points, labels, prior_mask=None, flow=None):
        img = to_uint8_rgb(image)
        h, w = img.shape[:2]
        points, labels = check_prompt(points, labels, (h, w))
        prior = _prior(prior_mask, (h, w))
        flow = _flow(flow, (h, w))
        if len(points) == 0:
            return prior
        radius = max(2, round(self.disk * max(h, w)))
        inc_disk = disks(points[labels == 1], (h, w), radius)
        exc_disk = disks(points[labels == 0], (h, w), radius)
        removed = np.zeros((h, w), bool)
        for point in points[labels == 0]:
            removed |= self.false_part(img, prior, point, radius, flow)
        added = np.zeros((h, w), bool)
        for point in points[labels == 1]:
            # the prior's objects beside the click (within two disk radii): a click there extends one of them
            beside = components_touching(prior, disks(point[None], (h, w), 2 * radius))
            added |= self.object_at(img, point, radius, flow, beside)
        return (((prior & ~removed) | added) & ~exc_disk) | inc_disk

    def object_at(self, img: np.ndarray, point: np.ndarray, radius: int, flow: np.ndarray | None = None,
                  beside: np.ndarray | None = None) -> np.ndarray:
        """The object under an include ``point`` (x, y) of ``img`` (H, W, 3) uint8, ``flow`` (H, W, 2) or None
        -> (H, W) bool. With flow, the region moving like the click, refined by colour; the colour object
        joins it when it covers most of it without being much larger (motion misses the parts of an
        articulated object that move otherwise; colour leaks on texture), and replaces it when the click is on
        plain colour and the moving region is much larger (surfaces at the object's depth move alike under a
        moving camera). When the motion result is over ``max_moving`` and the colour object over
        ``max_object`` of the image, or the two agree but together cover over ``max_moving``, neither found an
        object: the click's disk alone. ``beside`` (H, W) bool: the objects the click lies beside, which it
        extends (see :attr:`EXTEND_AT_MOST`)."""
        h, w = img.shape[:2]
        click = disks(point[None], (h, w), radius)
        colour = self.colour_object(img, point, click)
        if flow is None:
            return colour
        moving = self.moving_like(flow, point, self.max_moving)
        if moving.sum() <= click.sum():  # the click moves like its surroundings: colour alone decides, unless its
            # cut spread over more than any moving region may (rig-room: a click on a box's dark underside, whose
            # colour cut took the dark wall behind, 28 % of the frame) or, beside an object, far past its size
            # (rig-room: a click on a tumbling cube's missed corner, whose cut took the wallpaper and the boxes
            # around, 4 times the cube): then nothing was found but the click
            limit = self.max_moving * h * w
            if beside is not None and beside.any():
                limit = min(limit, self.EXTEND_AT_MOST * beside.sum())
            return colour if colour.sum() <= limit else click
        cut = self._bounded_cut(img, moving | click, click)
        # colour refines the border; a cut that lost most of the region lost it to similar colours, unless
        # what it kept is an object of its own that looks unlike the rest (the flow leaked past its border)
        kept_most = cut is not None and cut.sum() >= 0.5 * moving.sum()
        own_object = cut is not None and not kept_most and distinct(img, cut, moving, click)
        motion = cut if kept_most or own_object else moving | click
        if motion.sum() > self.max_moving * h * w and colour.sum() > self.max_object * h * w:
            # both leaked past any object (rig-hall: a click on the resting end of a thin arm, whose flow is the
            # floor's at that depth and whose colour cut spread over the floor): nothing found but the click
            return click
        agree = (colour & motion).sum() >= 0.7 * motion.sum() and colour.sum() <= 3 * motion.sum()
        if agree:  # unless together they cover more than any moving object may (handheld-hall: a click on a
            # breathing egg's missed half, whose flow and colour cut both spread over the floor, 35 % of the frame)
            both = motion | colour
            return both if both.sum() <= self.max_moving * h * w else click
        leaked = (colour & motion).sum() >= 0.7 * colour.sum() and motion.sum() > 3 * colour.sum()
        if leaked and not own_object and not self._textured(img, point):
            # a plain-coloured object inside a much larger region that moves alike: under a moving camera the
            # surfaces at the object's depth (the floor it stands on) share its flow, and plain colour is a
            # reliable border
            return colour
        return motion

    def colour_object(self, img: np.ndarray, point: np.ndarray, click: np.ndarray) -> np.ndarray:
        """The object of similar colour under ``point`` (x, y), ``click`` its disk (H, W) bool -> (H, W) bool."""
        h, w = img.shape[:2]
        fill = region_at(img, point, self.tolerances, self.max_object * h * w) | click
        seeds = [fill]
        if self._textured(img, point):
            # colour fill stalls on texture: GrabCut learns the object's colours from disks of probable
            # foreground, largest first, until one finds a border
            seeds = [disks(point[None], (h, w), round(f * self.reach * max(h, w))) for f in (1.0, 0.5, 0.25)]
        for region in seeds:
            cut = self._bounded_cut(img, region, click)
            # a cut that shrank to the click lost its colour model to the background
            if cut is not None and cut.sum() >= 0.5 * fill.sum():
                return cut
        return fill

    def _textured(self, img: np.ndarray, point: np.ndarray) -> bool:
        return textured(img, point, round(self.texture_radius * max(img.shape[:2])))

    def _bounded_cut(self, img: np.ndarray, region: np.ndarray, click: np.ndarray) -> np.ndarray | None:
        """GrabCut's object from ``region`` (H, W) bool, connected to ``click``, allowed to move the region's
        border by about a third of its size; None when it fails or reaches that band's rim all round (no
        border found). -> (H, W) bool or None."""
        band = max(3, round(0.35 * np.sqrt(region.sum())))
        cut = self._grabcut(img, region, band, click, np.zeros_like(region))
        if cut is None:
            return None
        cut = components_touching(cut, click)
        dist = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, 3)
        rim = (dist > band - 1.5) & (dist <= band)
        return None if (cut & rim).sum() > 0.25 * rim.sum() else cut

    def false_part(self, img: np.ndarray, prior: np.ndarray, point: np.ndarray, radius: int,
                   flow: np.ndarray | None = None) -> np.ndarray:
        """What an exclude ``point`` (x, y) removes from ``prior`` (H, W) bool -> (H, W) bool (empty off it).
        With ``flow`` (H, W, 2), the part of the component that moves like the click goes too: a plain surface
        (a wall) looks like the static surroundings GrabCut is shown only where they are that wall; and the
        rest, moving otherwise, stays however small it is. Moving alike is not enough where colour says
        otherwise (:class:`ColourOdds` of the dropped part and the click against what GrabCut kept): under a
        slow camera an object barely moves against the wall it was joined to (handheld-hall: the click took
        the breathing egg and the stick with the wall). Dropped pieces that move with the part GrabCut kept
        stay as well (:func:`moves_with`)."""
        h, w = img.shape[:2]
        comp = components_at(prior, point[None])
        if not comp.any():
            return comp
        click = disks(point[None], (h, w), radius)
        band = max(3, round(0.1 * max(h, w)))  # enough static surroundings for the background colours
        cut = self._grabcut(img, comp, band, np.zeros((h, w), bool), click, inside_only=True)
        if cut is None:
            return comp
        dropped = components_touching(comp & ~cut, click)
        if flow is not None:  # what is left moves otherwise than the click, or looks otherwise: kept however small
            dropped &= ~moves_with(flow, dropped, cut & ~dropped, click & comp)
            alike = comp & self.moving_like(flow, point)
            colours = img / 255.0
            looks = ColourOdds(colours, dropped | click, cut & ~dropped).fits(colours)
            return dropped | (alike & looks)
        # a component that is mostly the clicked false positive goes whole (no object worth keeping in it)
        return comp if (comp & ~dropped).sum() < 0.1 * comp.sum() else dropped

    def moving_like(self, flow: np.ndarray, point: np.ndarray, max_share: float = 1.0) -> np.ndarray:
        """The region whose flow (H, W, 2) stays close to the flow at ``point`` (x, y) (flood fill, tolerances
        ``flow_tolerances`` px at 480 px, up to ``max_share`` of the image) -> (H, W) bool."""
        h, w = flow.shape[:2]
        field = np.dstack([flow, np.zeros((h, w, 1))]).astype(np.float32)
        tolerances = [t * max(h, w) / REFERENCE_SIDE for t in self.flow_tolerances]
        return region_at(field, point, tolerances, max_share * h * w, growth=4.0)

    def _grabcut(self, img, region, band, fg, bg, inside_only=False):
        """GrabCut with ``region`` (H, W) bool as probable foreground, ``fg`` / ``bg`` definite, a ``band``-px
        ring around the region as probable background (definite with ``inside_only``: then only the region's
        pixels can change) and definite background beyond. -> (H, W) bool foreground, None when it cannot run."""
        h, w = region.shape
        ring = near(region, band)
        gc = np.full((h, w), cv2.GC_BGD, np.uint8)
        if not inside_only:
            gc[ring] = cv2.GC_PR_BGD
        gc[region] = cv2.GC_PR_FGD
        gc[fg] = cv2.GC_FGD
        gc[bg] = cv2.GC_BGD
        y0, y1, x0, x1 = _crop(ring, pad=2 if inside_only else band)  # definite background for its colours
        sub = gc[y0:y1, x0:x1].copy()
        cv2.setRNGSeed(0)  # GrabCut's k-means start draws from OpenCV's global RNG: same clicks, same mask
        try:
            cv2.grabCut(np.ascontiguousarray(img[y0:y1, x0:x1, ::-1]), sub, None, np.zeros((1, 65)),
                        np.zeros((1, 65)), self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # too few samples of one class for its colour model
            return None
        cut = np.zeros((h, w), bool)
        cut[y0:y1, x0:x1] = (sub == cv2.GC_FGD) | (sub == cv2.GC_PR_FGD)
        return cut


class ColourOdds:
    """Whether a colour looks like the ``fg`` pixels of ``image`` rather than the ``bg`` ones: joint RGB
    histograms with ``bins`` per channel, each normalised; a colour fits where fg shows it and holds at least
    ``min_share`` of the two likelihoods. With no fg pixels (nothing to judge) or ``min_share`` 0 every colour fits.
    image (H, W, 3) float [0, 1]; fg, bg (H, W) bool."""

    def __init__(self, image: np.ndarray, fg: np.ndarray, bg: np.ndarray, bins: int = 8, min_share: float = 0.3):
        self.bins = bins
        codes = self._codes(image)
        p_fg, p_bg = (np.bincount(codes[m], minlength=bins ** 3) / max(int(m.sum()), 1) for m in (fg, bg))
        self.table = ((p_fg > 0) & (p_fg >= min_share * (p_fg + p_bg))) | (not fg.any()) | (min_share <= 0)

    def fits(self, image: np.ndarray) -> np.ndarray:
        """image (H, W, 3) float [0, 1] -> (H, W) bool."""
        return self.table[self._codes(image)]

    def _codes(self, image: np.ndarray) -> np.ndarray:
        q = np.clip((np.asarray(image) * self.bins).astype(np.int64), 0, self.bins - 1)
        return (q[..., 0] * self.bins + q[..., 1]) * self.bins + q[..., 2]


def moves_with(flow: np.ndarray, part: np.ndarray, kept: np.ndarray, click: np.ndarray, min_gap: float = 2.0
               ) -> np.ndarray:
    """The pieces of ``part`` (H, W) bool that move like ``kept`` rather than like ``click`` and join it: the rest
    of an object whose colours GrabCut took for the surroundings (rig-hall: a swinging arm's striped end, dropped
    with the false wall slab beside it). Each pixel goes to the nearer of the two median flows (``flow`` (H, W, 2));
    specks are opened away; nothing when the medians lie within ``min_gap`` px at 480 (motion cannot tell them
    apart). -> (H, W) bool."""
    if not (part.any() and kept.any() and click.any()):
        return np.zeros_like(part, bool)
    h, w = part.shape
    at_kept, at_click = np.median(flow[kept], 0), np.median(flow[click], 0)
    if float(np.linalg.norm(at_kept - at_click)) < min_gap * max(h, w) / REFERENCE_SIDE:
        return np.zeros_like(part, bool)
    nearer = np.linalg.norm(flow - at_kept, axis=-1) < np.linalg.norm(flow - at_click, axis=-1)
    r = max(1, round(max(h, w) / REFERENCE_SIDE))
    nearer = cv2.morphologyEx((part & nearer).astype(np.uint8), cv2.MORPH_OPEN,
                              cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))).astype(bool)
    return components_touching(nearer, near(kept, 1))


def distinct(img: np.ndarray, cut: np.ndarray, region: np.ndarray, click: np.ndarray, min_gap: float = 50.0
             ) -> bool:
    """Whether ``cut`` (H, W) bool is an object of its own inside ``region``: several times the ``click`` disk
    and with a mean colour at least ``min_gap`` (0-255, largest channel) from the rest of the region."""
    rest = region & ~cut
    if cut.sum() < 4 * click.sum() or not rest.any():
        return False
    return float(np.abs(img[cut].mean(0) - img[rest].mean(0)).max()) >= min_gap


def textured(img: np.ndarray, point: np.ndarray, radius: int, max_std: float = 10.0) -> bool:
    """Whether ``img`` (H, W, 3) uint8 varies by more than ``max_std`` (per-channel std) within ``radius``
    px of ``point`` (x, y)."""
    near = disks(point[None], img.shape[:2], max(1, radius))
    return float(img[near].std(0).max()) > max_std


def region_at(img: np.ndarray, point: np.ndarray, tolerances, max_area: float, growth: float = 2.0) -> np.ndarray:
    """Pixels of similar value 4-connected to ``point`` (x, y): flood fill of the smoothed ``img`` (H, W, 3),
    uint8 colours or float32 (e.g. flow), within a fixed per-channel range of the click's value. ``tolerances``
    are tried tightest first and loosened while the region grows by at most ``growth`` x per step and stays
    under ``max_area`` pixels: a sudden jump means the fill leaked through the object's border. -> (H, W) bool."""
    h, w = img.shape[:2]
    smooth = cv2.GaussianBlur(img, (0, 0), max(0.7, max(h, w) / REFERENCE_SIDE))
    x, y = (int(v) for v in np.round(point))
    region = np.zeros((h, w), bool)
    region[y, x] = True
    for tol in sorted(tolerances):
        fill = np.zeros((h + 2, w + 2), np.uint8)
        cv2.floodFill(smooth.copy(), fill, (x, y), (0, 0, 0), (tol,) * 3, (tol,) * 3,
                      4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
        grown = fill[1:-1, 1:-1].astype(bool)
        if grown.sum() > max_area or (region.sum() > 16 and grown.sum() > growth * region.sum()):
            break
        region = grown
    return region


def _flow(flow, hw: tuple[int, int]) -> np.ndarray | None:
    if flow is None:
        return None
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape != (*hw, 2) or not np.isfinite(flow).all():
        raise InputError(f"segmenter: flow must be a finite (H, W, 2) = {(*hw, 2)} array, got {flow.shape}")
    return flow


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
    hit = labels[rows_cols(points)]
    return np.isin(labels, hit[hit > 0])


def components_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Components of ``mask`` (H, W) bool that overlap ``seeds`` (H, W) bool -> (H, W) bool."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    hit = np.unique(labels[seeds & mask])
    return np.isin(labels, hit[hit > 0])


def near(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` px of ``mask`` (H, W) bool (none when it is empty) -> (H, W) bool."""
    if not mask.any():
        return mask.copy()
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3) <= radius


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


def rows_cols(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (rows, cols) of the pixels nearest to points (P, >= 2) [x, y, ...] inside the image."""
    ij = np.round(points[:, :2]).astype(int)
    return ij[:, 1], ij[:, 0]


def _prior(prior_mask, hw: tuple[int, int]) -> np.ndarray:
    if prior_mask is None:
        return np.zeros(hw, bool)
    prior = np.asarray(prior_mask)
    if prior.shape != tuple(hw):
        raise InputError(f"segmenter: prior_mask must have shape {tuple(hw)}, got {prior.shape}")
    return prior.astype(bool)
