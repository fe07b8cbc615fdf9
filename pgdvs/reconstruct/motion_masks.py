"""Automatic dynamic masks from motion: what the camera motion cannot explain is moving.

Per frame pair (a, b) a pixel votes "moving" when a static world does not explain what frame b shows:
- with depth: frame b warped to frame a by the rigid flow of depth_a has another colour (photometric residual, over
  a threshold that follows the local texture: :func:`photo_thresholds`). It needs no estimated flow, which (DIS) is
  wrong in untextured areas while still passing the forward-backward check. Only pixels visible in b (depth_b
  z-test: occlusions and a moving object covering the spot give no evidence) count, untextured ones less when they
  look the same (:func:`tally`); a pixel with a "moving" vote is judged again at the depth of the static surface
  beside it, in case its estimated depth is the front object's bled over the background
  (:func:`retry_at_background_depth`). Objects that move slowly or
  change shape in place (a pulsing ball, a swaying pole at its turning point) only show over many frames,
  so wider gaps are compared in a second pass; over those, a moving object's estimated depth (unreliable)
  no longer hides what it passes in front of, so in the second pass the moving pixels of the first hide
  whatever projects onto them. A slow object lands on itself: over the wide gaps its own first-pass pixels
  are not hidden from it, and a pixel left with no partner keeps its first-pass evidence;
- without depth: the observed flow's endpoint is far from its epipolar line (blind to motion along the
  line), or, when the camera did not translate, from the rotation homography's endpoint; the threshold is
  scaled with resolution and raised to a multiple of the pair's median residual so noisy flow does not
  flood the mask; only pixels where forward and backward flow agree count.
Votes over both neighbours and several frame gaps (slow objects only show over larger gaps; flows are
composed from the neighbour flows unless given) are averaged, smoothed over time along the flow; plain regions
whose outline has evidence almost all round are added whole (a uniform object only shows motion at its
outline: :mod:`outlined_regions`); then cleaned: opening, closing, hole filling, components under a minimum
area dropped. With depth, components that the frames filmed again from the same place show unchanged go, and the
unchanged pixels of the others (:mod:`revisits`); last, pixels that the neighbouring frames' masks claim through
the flow join (:mod:`mask_neighbours`).

Shapes: frames (N, H, W, 3) float in [0, 1], flows (N-1, H, W, 2) (x, y) between neighbours, K (N, 3, 3),
c2w (N, 4, 4), depth (N, H, W) or None -> masks (N, H, W) bool, True = dynamic.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from scipy import ndimage

from ..errors import InputError
from ..geometry import in_image, invert_pose, pixel_grid, project_points, unproject_depth
from ..render.morphology import dilate, max_filter, min_filter
from ..videoio import to_uint8
from ..warp import backward_warp, flow_consistency, sample_image
from .mask_neighbours import NEIGHBOUR_OFFSETS, NEIGHBOUR_VOTES, claimed_by_neighbours
from .outlined_regions import MIN_COVER, outlined_regions
from .revisits import drop_still_components, peel_still_pixels, revisit_partners, unchanged_in_revisits
from .scale import REFERENCE_SIDE, pixels_at

PAIR_CHUNK = 8  # frame pairs evaluated together (memory ~ 100 MB per chunk at 480 x 270)
TEXTURE_MIN = 0.02  # mean central-difference gradient (intensity per 2 px) below which a pixel is untextured
SNAP_KEEP_MIN = 0.3  # a colour snap that keeps less of the mask than this is rejected
DEPTH_TOLERANCE = 0.03  # relative: a point further than this behind the surface seen in frame b is hidden
BACKGROUND_RADII = (3, 7, 15)  # px at 480: how far foreground depth may bleed over the background beside it
UNTEXTURED_WEIGHT = 0.3  # how much a "static" look counts at an untextured pixel (see :func:`tally`)
MIN_OBJECT_RADIUS = 9  # px at 480: a thinner mask component without a sure core is a sliver, not an object
MOVER_MARGIN = 3  # px at 480: how far the moving pixels of a first pass are grown before they hide others
OUTLINE_BAND = 2  # px at 480: the band around a plain region whose evidence judges it (:mod:`outlined_regions`)
PHOTO_FLOOR = 0.02  # the photometric threshold never drops below this, however faint the texture


def motion_masks(frames, flows_fwd, flows_bwd, K, c2w, depth=None, *, threshold_px: float = 1.5,
                 noise_factor: float = 3.0, gaps: tuple[int, ...] = (1, 2, 4, 8),
                 wide_gaps: tuple[int, ...] = (16, 24), vote_frac: float = 0.2,
                 min_area_frac: float = 0.002, gap_flows: dict | None = None, sam_model=None,
                 photo_threshold: float = 0.045, colour_snap_px: float = 16.0,
                 background_radii: tuple[int, ...] = BACKGROUND_RADII, outline_cover: float = MIN_COVER,
                 contrast_factor: float = 1.0, neighbour_votes: int = NEIGHBOUR_VOTES,
                 revisits: bool = True, chained=None) -> np.ndarray:
    """Dynamic masks for every frame (shapes in the module doc).

    With depth: ``photo_threshold`` is the mean colour difference (0-1 scale) that counts as motion, lowered
    to ``contrast_factor`` x the pixel's local texture (:func:`photo_thresholds`; 0: a fixed threshold);
    ``background_radii`` (px at 480): pixels with a "moving" vote are judged again at the depth of the static
    surface within each of these distances (:func:`retry_at_background_depth`; empty: off).
    Without depth: ``threshold_px`` is the epipolar residual at 480 px that counts as motion (scaled with
    resolution, plus 5 % of the flow length), raised to ``noise_factor`` x the pair's median residual, and
    ``gap_flows``: {gap: (fwd (N-gap, H, W, 2), bwd)} flows computed directly at larger gaps (else composed).
    ``gaps``: frame gaps compared; ``wide_gaps`` (with depth): further gaps, for objects too slow to show
    over the others, compared in a second pass (see the module doc; empty: no second pass); ``vote_frac``:
    fraction of pairs with evidence that must vote "moving"; ``min_area_frac``: smallest kept component as a
    fraction of the image; ``sam_model``: snap to SAM segments (:func:`snap_to_segments`); without SAM,
    ``colour_snap_px`` > 0 snaps to colour edges within that band at 480 px (:func:`snap_to_colour`);
    ``outline_cover``: a plain region whose outline has evidence on at least this share of it is moving whole
    (:func:`outlined_regions.outlined_regions`; 0: off); ``neighbour_votes``: a pixel that this many of the
    NEIGHBOUR_OFFSETS frames' masks claim through the flow joins its frame's mask
    (:func:`mask_neighbours.claimed_by_neighbours`; 0: off); ``revisits`` (with depth): components that the frames
    filmed again from the same place show unchanged are dropped, and the others' unchanged pixels peeled off
    (:mod:`revisits`); ``chained``: the flows' :func:`chained_flows` (check tolerance 1 px at 480) reaching the
    NEIGHBOUR_OFFSETS, when the caller has them (else they are chained here).
    """
    frames, fwd, bwd, K, c2w, depth = _check_inputs(frames, flows_fwd, flows_bwd, K, c2w, depth)
    n, h, w = frames.shape[:3]
    scale = max(h, w) / REFERENCE_SIDE
    thr = max(threshold_px * scale, 0.5)
    tol = max(1.0, scale)
    votes, counts = torch.zeros(n, h, w), torch.zeros(n, h, w)
    images = torch.as_tensor(frames, dtype=torch.float32).permute(0, 3, 1, 2)
    texture = local_texture(images, max(1, round(scale * 2)))
    textured = texture > TEXTURE_MIN
    if depth is not None:
        points = unproject_depth(depth, K.float(), c2w.float())
        nearest = nearest_surface(depth)
        thresholds = photo_thresholds(texture, photo_threshold, contrast_factor)
    gaps = sorted({g for g in gaps if 0 < g < n})
    wide = sorted({g for g in wide_gaps if 0 < g < n} - set(gaps))
    if depth is None:
        _epipolar_votes(votes, counts, gaps, fwd, bwd, K, c2w, gap_flows, thr, noise_factor, tol)
    elif not wide_gaps:
        _photometric_votes(votes, counts, gaps, images, textured, points, nearest, K, c2w, thresholds)
    else:
        # a moving object's depth is unreliable, so it may fail to hide what it passes in front of: a first pass
        # finds the movers, and in a second one they hide whatever projects onto them
        first = torch.zeros(n, h, w), torch.zeros(n, h, w)
        _photometric_votes(*first, gaps, images, textured, points, nearest, K, c2w, thresholds)
        movers = first[0] > vote_frac * first[1].clamp(min=1)
        radius = max(1, round(scale * MOVER_MARGIN))
        movers = dilate(movers, radius)
        scene = (images, textured, points, nearest, K, c2w, thresholds, movers)
        _photometric_votes(votes, counts, gaps, *scene)
        # over wide gaps a slow object lands on itself: its own first-pass pixels are not hidden from it
        _photometric_votes(votes, counts, wide, *scene, movers_exempt=True)
        # a pixel with no partner left (a slow object over the near gaps) keeps its first-pass evidence
        lost = counts == 0
        votes[lost], counts[lost] = first[0][lost], first[1][lost]
    if depth is not None and background_radii:
        retry_at_background_depth(votes, counts, images, textured, points, depth, nearest, K, c2w, gaps + wide,
                                  thresholds, [max(1, round(r * scale)) for r in background_radii])
    score = temporal_smooth(votes / counts.clamp(min=1), counts > 0, fwd, bwd, tol)
    evidence = (score > vote_frac).numpy()
    if outline_cover > 0:
        band = max(1, round(OUTLINE_BAND * scale))
        evidence |= np.stack([outlined_regions(e, t, band, outline_cover) for e, t in zip(evidence, textured.numpy())])
    masks = np.stack([clean_mask(e, min_area_frac) for e in evidence])
    if sam_model is not None:
        masks = snap_to_segments(masks, frames, sam_model)
    elif colour_snap_px > 0:
        band = max(4, round(colour_snap_px * scale))
        least = max(2, round(MIN_OBJECT_RADIUS * scale))
        masks = np.stack([snap_to_colour(f, m, band, least) for f, m in zip(frames, masks)])
    if depth is not None and revisits:
        k, poses = K.numpy(), c2w.numpy()
        still = unchanged_in_revisits(frames, k, poses, revisit_partners(k, poses, depth.numpy()))
        masks = drop_still_components(masks, still, textured.numpy())
        masks = peel_still_pixels(masks, still, textured.numpy(), pixels_at(2, (h, w)),
                                  max(4.0, min_area_frac * h * w))
    if neighbour_votes > 0:
        if chained is None:
            chained = chained_flows(fwd, bwd, max(abs(o) for o in NEIGHBOUR_OFFSETS), tol)
        masks = masks | claimed_by_neighbours(masks, chained, NEIGHBOUR_OFFSETS, neighbour_votes)
    return masks


def _photometric_votes(votes, counts, gaps, images, textured, points, nearest, K, c2w, thresholds,
                       movers=None, *, movers_exempt=False):
    """Add the photometric votes of every pair (a, a +- gap) to frame a's ``votes`` / ``counts`` (in place).
    thresholds (N, H, W): each pixel's photometric threshold (:func:`photo_thresholds`); movers (N, H, W) bool
    or None: pixels that hide whatever projects onto them in a partner frame, except (``movers_exempt``) for
    pixels that are movers themselves."""
    n = len(images)
    for gap in gaps:
        src, dst = _pairs(n, gap)
        for c in range(0, len(src), PAIR_CHUNK):
            a, b = src[c:c + PAIR_CHUNK], dst[c:c + PAIR_CHUNK]
            hide = () if movers is None else (movers[b], movers[a] if movers_exempt else None)
            residual, seen = photometric_residual(images[a], points[a], images[b], nearest[b], K[b], c2w[b], *hide)
            moving, weight = tally(residual, seen, textured[a], thresholds[a])
            votes.index_add_(0, a, moving)
            counts.index_add_(0, a, weight)


def tally(residual: torch.Tensor, seen: torch.Tensor, textured: torch.Tensor, threshold: float
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Votes and their weights from photometric residuals: a pixel seen in the partner frame votes "moving"
    (weight 1) when its residual exceeds ``threshold``, else "static": weight 1 where it is textured, and
    UNTEXTURED_WEIGHT where not. An untextured pixel looks the same whatever the motion, so looking the same is
    weak evidence there (a uniform object lands on itself), but some: one "moving" look, e.g. depth error
    carrying a plain wall onto a pillar, must not mark it outright.
    residual, seen, textured (*S) (seen, textured bool) -> moving votes (*S) float, weights (*S) float."""
    moving = seen & (residual > threshold)  # threshold: a number or a tensor shaped like residual
    weight = moving.float() + torch.where(textured, 1.0, UNTEXTURED_WEIGHT) * (seen & ~moving).float()
    return moving.float(), weight


def _pairs(n: int, gap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame indices (a, b) of every pair ``gap`` apart, both ways: forward pairs first, then backward."""
    return (torch.cat([torch.arange(n - gap), torch.arange(gap, n)]),
            torch.cat([torch.arange(gap, n), torch.arange(n - gap)]))


def _epipolar_votes(votes, counts, gaps, fwd, bwd, K, c2w, gap_flows, thr, noise_factor, tol):
    """Add the flow-based votes of every pair (a, a +- gap) to frame a's ``votes`` / ``counts`` (in place)."""
    n, h, w = fwd.shape[0] + 1, fwd.shape[1], fwd.shape[2]
    for gap in gaps:
        flows_ij, flows_ji = _gap_flows(gap_flows, gap, fwd, bwd, (n - gap, h, w, 2))
        f_ab, f_ba = torch.cat([flows_ij, flows_ji]), torch.cat([flows_ji, flows_ij])
        src, dst = _pairs(n, gap)
        for c in range(0, len(src), PAIR_CHUNK):
            chunk = slice(c, c + PAIR_CHUNK)
            a, b, fab, fba = src[chunk], dst[chunk], f_ab[chunk], f_ba[chunk]
            res = epipolar_residual(fab, K[a], c2w[a], K[b], c2w[b])
            ok = consistent(fab, fba, tol) & torch.isfinite(res)
            # the pair's typical residual (static pixels dominate), from every 4th pixel each way
            noise = torch.where(ok, res, torch.nan)[:, ::4, ::4].flatten(1).nanmedian(dim=1).values
            floor = (noise_factor * noise.nan_to_num(0.0)).clamp(min=thr)[:, None, None]
            moving = res > floor + 0.05 * fab.norm(dim=-1)  # flow error grows with the flow's length
            votes.index_add_(0, a, (moving & ok).float())
            counts.index_add_(0, a, ok.float())


def _gap_flows(gap_flows, gap, fwd, bwd, shape):
    if gap == 1 or not gap_flows or gap not in gap_flows:
        return compose_flows(fwd, bwd, gap)
    out = tuple(torch.as_tensor(np.asarray(f), dtype=torch.float32) for f in gap_flows[gap])
    if any(tuple(f.shape) != shape for f in out):
        raise InputError(f"motion_masks: 'gap_flows[{gap}]' must be two arrays of shape {shape}")
    return out


def nearest_surface(depth: torch.Tensor) -> torch.Tensor:
    """The nearest depth within one pixel of each pixel (a point is hidden only behind all of them).
    depth (N, H, W) -> (N, H, W)."""
    return min_filter(depth, 1)


def photometric_residual(colours_a: torch.Tensor, points_a: torch.Tensor, image_b: torch.Tensor,
                         nearest_b: torch.Tensor, K_b: torch.Tensor, c2w_b: torch.Tensor,
                         occluders_b: torch.Tensor | None = None, exempt_a: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean absolute colour difference between pixels of frame a and frame b sampled where a static world puts
    them (their world points projected into b; not smoothed: that would grow the mask past the object's edge);
    ``seen`` marks points that land inside frame b and are not hidden there by a nearer surface (occlusions
    and a moving object covering the spot are no evidence), nor land on ``occluders_b`` (B, H, W) bool
    (pixels taken to hide whatever projects onto them) unless ``exempt_a`` (B, *S) bool marks them.
    colours_a (B, 3, *S) and points_a (B, *S, 3) (world points of those pixels, e.g. S = (H, W): a whole frame's
    depth unprojected), image_b (B, 3, H, W), nearest_b (B, H, W) frame b's :func:`nearest_surface`,
    K_b (B, 3, 3), c2w_b (B, 4, 4)
    -> residual (B, *S), seen (B, *S) bool."""
    bsz, shape = points_a.shape[0], points_a.shape[1:-1]
    h, w = nearest_b.shape[1:]
    uv, z = project_points(points_a.reshape(bsz, -1, 3), K_b.float(), c2w_b.float())
    seen = (z > 0) & in_image(uv, h, w) & (z <= sample_image(nearest_b[:, None], uv)[:, 0] * (1 + DEPTH_TOLERANCE))
    if occluders_b is not None:
        covered = sample_image(occluders_b[:, None].float(), uv)[:, 0] > 0
        seen &= ~covered if exempt_a is None else ~covered | exempt_a.reshape(bsz, -1)
    residual = (colours_a.reshape(bsz, 3, -1) - sample_image(image_b, uv)).abs().mean(1)
    return residual.reshape(bsz, *shape), seen.reshape(bsz, *shape)


def retry_at_background_depth(votes: torch.Tensor, counts: torch.Tensor, images: torch.Tensor,
                              textured: torch.Tensor, points: torch.Tensor, depth: torch.Tensor,
                              nearest: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, gaps: list[int],
                              thresholds: torch.Tensor, radii: list[int]) -> None:
    """Second chance for pixels with a "moving" vote: each is also tried at the depth of the farthest pixel
    without one within each radius, and the depth (its own or one of those) with the lowest mean colour
    residual over the partner frames (a +- gap) that see it casts the pixel's votes. Estimated depth bleeds
    the front surface's depth over the background beside an occlusion edge (smoothing; flow that follows the
    front object), and that static background then fails the photometric test (in a depth sweep on the
    synthetic suite, most static false positives fit best farther than their estimate); a moving object is
    rarely explained by the depth of the static surface next to it. A retry only ever lowers a pixel's share
    of "moving" votes.
    votes, counts (N, H, W) (updated in place), images (N, 3, H, W), textured (N, H, W) bool, points
    (N, H, W, 3) world points of depth (N, H, W), nearest (N, H, W) its :func:`nearest_surface`, K (N, 3, 3),
    c2w (N, 4, 4), thresholds (N, H, W) per-pixel photometric thresholds; radii in pixels."""
    n = depth.shape[0]
    flagged = votes > 0
    static_depth = torch.where(flagged, torch.zeros(()), depth)
    # 0 where every pixel within the radius is flagged: no other surface to try there
    far = [max_filter(static_depth, r) for r in radii]
    centres = c2w[:, :3, 3].float()
    for a in range(n):
        idx = torch.nonzero(flagged[a].flatten())[:, 0]
        b = torch.tensor([a + s * g for g in gaps for s in (1, -1) if 0 <= a + s * g < n], dtype=torch.long)
        if len(idx) == 0 or len(b) == 0:
            continue
        own = depth[a].flatten()[idx]
        rays = points[a].reshape(-1, 3)[idx] - centres[a]
        colours = images[a].flatten(1)[:, idx].expand(len(b), -1, -1)
        tex = textured[a].flatten()[idx]
        threshold = thresholds[a].flatten()[idx]
        best = torch.full_like(own, float("inf"))
        new_votes, new_counts = votes[a].flatten()[idx], counts[a].flatten()[idx]
        own_share = new_votes / new_counts.clamp(min=1)
        for alt in [own] + [f[a].flatten()[idx] for f in far]:
            ratio = torch.where(alt > 0, alt / own, torch.ones(()))
            pts = (centres[a] + rays * ratio[:, None]).expand(len(b), -1, -1)
            residual, seen = photometric_residual(colours, pts, images[b], nearest[b], K[b], c2w[b])
            cost = torch.where(seen, residual, torch.zeros(())).sum(0) / seen.sum(0).clamp(min=1)
            alt_votes, alt_counts = (x.sum(0) for x in tally(residual, seen, tex, threshold))
            # a retry only clears: another depth may see fewer partners, whose few votes must not add motion
            better = seen.any(0) & (cost < best) & (alt_votes <= own_share * alt_counts)
            best = torch.where(better, cost, best)
            new_votes = torch.where(better, alt_votes, new_votes)
            new_counts = torch.where(better, alt_counts, new_counts)
        votes[a].view(-1)[idx] = new_votes
        counts[a].view(-1)[idx] = new_counts


def photo_thresholds(texture: torch.Tensor, cap: float, factor: float) -> torch.Tensor:
    """Per-pixel photometric threshold: ``factor`` x the local texture (mean gradient per 2 px, about the
    colour change a 2 px misplacement makes there), between PHOTO_FLOOR and ``cap``. One fixed threshold is
    blind to faint texture that moves: on a dim, low-contrast object every misplaced pixel stays under it
    (synthetic-reconstruct mask IoU with factor 1: rig 0.731 -> 0.826, rig-hall 0.33 -> 0.61; handheld 0.715 ->
    0.709). factor 0: ``cap`` everywhere. texture (N, H, W) -> (N, H, W)."""
    if factor <= 0:
        return torch.full_like(texture, cap)
    return (factor * texture).clamp(min=min(PHOTO_FLOOR, cap), max=cap)


def local_texture(images: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Mean gradient magnitude of the grey image over a (2 radius + 1)^2 window (shrunk at the border).
    images (N, 3, H, W) -> (N, H, W)."""
    grey = images.mean(1)
    grad = torch.zeros_like(grey)
    gx, gy = grey[:, 1:-1, 2:] - grey[:, 1:-1, :-2], grey[:, 2:, 1:-1] - grey[:, :-2, 1:-1]
    grad[:, 1:-1, 1:-1] = (gx ** 2 + gy ** 2).sqrt()
    return torch.nn.functional.avg_pool2d(grad[:, None], 2 * radius + 1, 1, radius, count_include_pad=False)[:, 0]


def epipolar_residual(flow: torch.Tensor, K_a: torch.Tensor, c2w_a: torch.Tensor, K_b: torch.Tensor,
                      c2w_b: torch.Tensor) -> torch.Tensor:
    """Distance of each flow endpoint from the epipolar line of its pixel; for a camera that did not
    translate, distance from where the rotation homography sends the pixel (any depth).
    flow (B, H, W, 2) a->b, K (B, 3, 3), c2w (B, 4, 4) float64 -> (B, H, W) pixels."""
    bsz, h, w = flow.shape[:3]
    rel = invert_pose(c2w_b) @ c2w_a  # camera a -> camera b
    rot, t = rel[:, :3, :3], rel[:, :3, 3]
    tx = torch.zeros(bsz, 3, 3, dtype=t.dtype)
    tx[:, 0, 1], tx[:, 0, 2], tx[:, 1, 2] = -t[:, 2], t[:, 1], -t[:, 0]
    tx = tx - tx.transpose(1, 2)
    fund = torch.linalg.inv(K_b).transpose(1, 2) @ tx @ rot @ torch.linalg.inv(K_a)
    homog = K_b @ rot @ torch.linalg.inv(K_a)
    still = t.norm(dim=-1) <= 1e-9 * max(1.0, float(c2w_a[:, :3, 3].abs().max()))
    grid = _homogeneous(pixel_grid(h, w)).reshape(1, -1, 3)
    end = grid[..., :2] + flow.reshape(bsz, -1, 2)
    lines = grid @ fund.float().transpose(1, 2)
    dist = (_homogeneous(end) * lines).sum(-1).abs() / lines[..., :2].norm(dim=-1).clamp(min=1e-12)
    proj = grid @ homog.float().transpose(1, 2)
    rot_res = (end - proj[..., :2] / proj[..., 2:].clamp(min=1e-9)).norm(dim=-1)
    return torch.where(still[:, None], rot_res, dist).reshape(bsz, h, w)


def consistent(flow_ab: torch.Tensor, flow_ba: torch.Tensor, tol: float = 1.0) -> torch.Tensor:
    """Forward-backward check (the original's |dx| + |dy| <= tol) with the endpoint inside the image.
    flow_ab, flow_ba (B, H, W, 2) -> (B, H, W) bool."""
    h, w = flow_ab.shape[1:3]
    end = pixel_grid(h, w) + flow_ab
    inside = (end[..., 0] >= 0) & (end[..., 0] <= w - 1) & (end[..., 1] >= 0) & (end[..., 1] <= h - 1)
    return (flow_consistency(flow_ab, flow_ba).abs().sum(-1) <= tol) & inside


def compose_flows(fwd: torch.Tensor, bwd: torch.Tensor, gap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flows over ``gap`` frames by chaining neighbour flows. fwd, bwd (N-1, H, W, 2) (i -> i+1, i+1 -> i)
    -> (flows i -> i+gap, flows i+gap -> i), each (N-gap, H, W, 2)."""
    return composed_flows(fwd, bwd, gap)[gap]


def composed_flows(fwd: torch.Tensor, bwd: torch.Tensor, reach: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Every chain of :func:`compose_flows` up to ``reach`` frames (at most N-1), each gap built from the one
    before: {gap: (flows i -> i+gap, flows i+gap -> i)}, gap 1 being the neighbour flows themselves."""
    out = {1: (fwd, bwd)}
    for step in range(1, min(reach, fwd.shape[0])):
        out_f, out_b = out[step]
        count = fwd.shape[0] - step
        # i -> i+step+1 = (i -> i+step) then (i+step -> i+step+1), sampled where the first lands
        # i+step+1 -> i = (i+step+1 -> i+step) then (i+step -> i)
        out[step + 1] = (out_f[:count] + warp_field(fwd[step:], out_f[:count]),
                         bwd[step:] + warp_field(out_b[:count], bwd[step:]))
    return out


def chained_flows(flows_fwd: np.ndarray, flows_bwd: np.ndarray, reach: int, tol: float = 1.0):
    """-> ``chained(i, offset)``: (flow i -> i + offset (H, W, 2) float32, where it passes the forward-backward check
    within ``tol`` px (H, W) bool) for 0 < |offset| <= ``reach`` (over several frames: the neighbour flows chained,
    :func:`composed_flows`); each offset's checks are made for every frame at once, when first asked for."""
    fwd, bwd = torch.as_tensor(np.asarray(flows_fwd, np.float32)), torch.as_tensor(np.asarray(flows_bwd, np.float32))
    gaps = composed_flows(fwd, bwd, reach)
    checked = {}

    def chained(i: int, offset: int):
        there, back = gaps[abs(offset)] if offset > 0 else gaps[abs(offset)][::-1]
        if offset not in checked:
            checked[offset] = consistent(there, back, tol).numpy()
        first = i if offset > 0 else i + offset  # both directions are indexed by the earlier frame
        return there[first].numpy(), checked[offset][first]

    return chained


def warp_field(field: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Pull a per-pixel field of frame b into frame a along flow a->b: out(p) = field(p + flow(p)), zero
    outside. field (B, H, W, C), flow (B, H, W, 2) -> (B, H, W, C)."""
    return backward_warp(field.permute(0, 3, 1, 2), flow).permute(0, 2, 3, 1)


def temporal_smooth(score: torch.Tensor, known: torch.Tensor, fwd: torch.Tensor, bwd: torch.Tensor,
                    tol: float = 1.0) -> torch.Tensor:
    """Average each frame's score with its neighbours' pulled along consistent flow, so a moment without
    visible motion or one noisy frame does not flip the mask. score (N, H, W), ``known`` (N, H, W) bool
    (pixels with at least one vote), fwd/bwd (N-1, H, W, 2) -> (N, H, W)."""
    total = torch.where(known, score, torch.zeros(()))
    weight = known.float()
    # frames 0..N-2 look at their next frame (flow fwd), frames 1..N-1 at their previous one (flow bwd)
    for idx, nb, f_ij, f_ji in ((slice(0, -1), slice(1, None), fwd, bwd), (slice(1, None), slice(0, -1), bwd, fwd)):
        pulled = warp_field(torch.stack([score[nb], known[nb].float()], -1), f_ij)
        ok = consistent(f_ij, f_ji, tol) & (pulled[..., 1] > 0.99)
        total[idx] += torch.where(ok, pulled[..., 0], torch.zeros(()))
        weight[idx] += ok.float()
    return total / weight.clamp(min=1)


def clean_mask(mask: np.ndarray, min_area_frac: float = 0.002) -> np.ndarray:
    """Objects, not speckles: opening, closing, hole filling, components smaller than ``min_area_frac``
    of the image removed. mask (H, W) bool -> (H, W) bool."""
    h, w = mask.shape
    radius = pixels_at(2, (h, w))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, disk)
    return remove_small_components(ndimage.binary_fill_holes(m), max(4.0, min_area_frac * h * w))


def remove_small_components(mask: np.ndarray, min_area: float) -> np.ndarray:
    """mask (H, W) bool -> (H, W) bool without 8-connected components under ``min_area`` pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


def snap_to_segments(masks: np.ndarray, frames: np.ndarray, sam_model, min_iou: float = 0.5) -> np.ndarray:
    """Replace each mask component by the SAM segment it prompts when they agree (IoU >= ``min_iou``).
    One SAM image embedding per frame with a mask: costly on CPU (~12 s for vit_b at 480 px), so callers
    pick the frames. masks (N, H, W) bool, frames (N, H, W, 3) -> (N, H, W) bool."""
    from .segmenters import SamSegmenter

    seg = SamSegmenter(sam_model, cache_size=1)
    out = masks.copy()
    for i, mask in enumerate(masks):
        if mask.any():
            out[i] = seg.snap(i, frames[i], mask, min_iou=min_iou)
    return out


def snap_to_colour(frame: np.ndarray, mask: np.ndarray, band: int, min_radius: int = 9,
                   iterations: int = 3) -> np.ndarray:
    """Move the mask border to colour edges within ``band`` pixels (GrabCut: the mask eroded by the band is
    dynamic, the mask probably dynamic, its dilation probably static, the rest static). Motion evidence
    smears over a few pixels around a moving object (camera error, temporal smoothing); the object's colour
    usually ends where it does. A component thinner than twice the band has no sure core, so the joint cut
    has no colour model of it and may drop it whole: such a component, when it is no sliver (its farthest
    pixel from its border is ``min_radius`` px in or more), is cut again alone with a band half that depth.
    frame (H, W, 3) float in [0, 1], mask (H, W) bool -> (H, W) bool."""
    if not mask.any():
        return mask
    out = _grabcut_band(frame, mask, band, iterations)
    if out is None:  # a colour model without samples (e.g. no static pixel in the box): keep the mask
        return mask
    if out.sum() < SNAP_KEEP_MIN * mask.sum():  # colour lost the objects as a whole: evidence beats colour
        return mask
    m8 = mask.astype(np.uint8)
    count, comp = cv2.connectedComponents(m8, connectivity=8)
    size = np.bincount(comp.ravel(), minlength=count)
    kept = np.bincount(comp.ravel(), weights=out.ravel(), minlength=count)
    core = cv2.erode(m8, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * band + 1, 2 * band + 1))) > 0
    cored = np.bincount(comp.ravel(), weights=core.ravel(), minlength=count) > 0
    # each component's inset: components touch no other, so one distance transform of the mask serves all
    inset = np.zeros(count)
    np.maximum.at(inset, comp.ravel(), cv2.distanceTransform(np.pad(m8, 1), cv2.DIST_L2, 3)[1:-1, 1:-1].ravel())
    lost = (kept < SNAP_KEEP_MIN * size) & ~cored & (inset >= min_radius)
    lost[0] = False  # the background
    for c in np.flatnonzero(lost):
        piece = comp == c
        alone = _grabcut_band(frame, piece, max(2, int(inset[c] // 2)), iterations)
        if alone is not None and alone.sum() >= SNAP_KEEP_MIN * piece.sum():
            out |= alone
    return out


def _grabcut_band(frame: np.ndarray, mask: np.ndarray, band: int, iterations: int) -> np.ndarray | None:
    """GrabCut of ``mask`` (H, W) bool (non-empty) on the box of its ``band`` dilation, with the labels of
    :func:`snap_to_colour`; None when OpenCV cannot build a colour model."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * band + 1, 2 * band + 1))
    m8 = mask.astype(np.uint8)
    outer = cv2.dilate(m8, kernel) > 0
    rows, cols = np.nonzero(outer)
    y0, y1 = max(rows.min() - band, 0), rows.max() + band + 1  # GrabCut on the band's box: static context
    x0, x1 = max(cols.min() - band, 0), cols.max() + band + 1
    crop = (slice(y0, y1), slice(x0, x1))
    labels = np.full(outer[crop].shape, cv2.GC_BGD, np.uint8)
    labels[outer[crop]] = cv2.GC_PR_BGD
    labels[mask[crop]] = cv2.GC_PR_FGD
    labels[cv2.erode(m8, kernel)[crop] > 0] = cv2.GC_FGD
    image = np.ascontiguousarray(to_uint8(frame[crop]))
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation draws from OpenCV's global generator
    try:
        cv2.grabCut(image, labels, None, np.zeros((1, 65)), np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    out = np.zeros_like(mask)
    out[crop] = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return out


def _homogeneous(uv: torch.Tensor) -> torch.Tensor:
    return torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)


def _check_inputs(frames, flows_fwd, flows_bwd, K, c2w, depth):
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"motion_masks: 'frames' must be (N, H, W, 3), got {frames.shape}")
    n, h, w = frames.shape[:3]
    if n < 2:
        raise InputError(f"motion_masks: 'frames' holds {n} frame(s); motion needs at least 2")
    expect = {"flows_fwd": (flows_fwd, (n - 1, h, w, 2)), "flows_bwd": (flows_bwd, (n - 1, h, w, 2)),
              "K": (K, (n, 3, 3)), "c2w": (c2w, (n, 4, 4))}
    if depth is not None:
        expect["depth"] = (depth, (n, h, w))
    out = []
    for name, (arr, shape) in expect.items():
        arr = np.asarray(arr)
        if arr.shape != shape:
            raise InputError(f"motion_masks: '{name}' must have shape {shape}, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError(f"motion_masks: '{name}' contains NaN or infinite values")
        out.append(torch.as_tensor(arr, dtype=torch.float64 if name in ("K", "c2w") else torch.float32))
    if depth is None:
        out.append(None)
    return (frames, *out)
