"""Click editing of dynamic masks with propagation to every frame: the state behind the app's mask editor.

One ``MaskEditor`` per session. Clicks on frame k go to a :class:`~pgdvs.reconstruct.segmenters.Segmenter`
(SAM or GrabCut) together with the mask frame k had before its first click (its base); ``propagate`` carries
the edit to the other frames: what the edit added to / removed from the automatic mask is pulled along the
flow frame by frame and laid over that frame's automatic mask; where the clicks, moved along the flow, survive,
they re-prompt the segmenter there (while they still show the colour they were given on: a click that an
object moved onto would prompt the object), whose changes count only near the carried correction (masks far from
the edit are never touched); what is carried keeps only the colours the clicked frame's addition shows rather than
its surroundings (the flow of an untextured face may follow the wall behind it, and the addition with it).
Given the cameras, a removal (and an exclude click) is carried only where its flow keeps to the epipolar lines:
what an exclude click removes is static, and a part that moves otherwise rides on an object it would cut away.
Frames with their own clicks keep their mask, and propagation continues from them.
An edit does not cross a flow that fails as a whole (a cut, or a camera jump such as a rig's wrap-around): the
frames past it are left as they are (their automatic mask, or what an edit on their side gave them) up to the
next frame with its own clicks.

Shapes: frames (N, H, W, 3) float in [0, 1], masks (N, H, W) bool (True = dynamic), flows (N-1, H, W, 2):
flows_fwd[i] is i -> i+1, flows_bwd[i] is i+1 -> i; optional cameras K (N, 3, 3) pixels, c2w (N, 4, 4) OpenCV
camera-to-world. Points are pixel (x, y) = (column, row).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import InputError
from ..warp import sample_image
from .motion_masks import consistent, epipolar_residual, warp_field
from .scale import REFERENCE_SIDE
from .segmenters import ColourOdds, Segmenter, check_prompt, near, rows_cols


@dataclass
class _Click:
    x: float
    y: float
    label: int
    mask: np.ndarray  # the frame's mask after this click


class MaskEditor:
    edit_reach = 0.02  # fraction of the image size a re-prompted edit may reach past the carried one
    same_colour = 0.08  # mean colour difference (0-1) under which a carried removal still shows the same surface
    max_growth = 1.5  # a re-prompted addition larger than this times the source frame's keeps the flow-carried one
    addition_colour_share = 0.3  # a carried addition keeps the colours whose odds of being its own (against the
    # surroundings of the addition on the clicked frame) are at least this: off its object, the background's go
    max_epipolar = 1.0  # px at 480 a removed pixel's flow may stray from its epipolar line and still count as static
    min_flow_agreement = 0.3  # share of pixels whose forward and backward flow agree (2 px at 480) under which
    # the flow between two frames failed as a whole (rig camera jumps: 0.03-0.13, other pairs 0.69-1.0)

    def __init__(self, frames, masks, flows_fwd, flows_bwd, segmenter: Segmenter, K=None, c2w=None):
        frames, masks = np.asarray(frames), np.asarray(masks)
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
            raise InputError(f"MaskEditor: 'frames' must be (N, H, W, 3), got {frames.shape}")
        n, h, w = frames.shape[:3]
        if (K is None) != (c2w is None):
            raise InputError("MaskEditor: give both 'K' and 'c2w' (the cameras) or neither")
        cameras = () if K is None else (("K", K, (n, 3, 3)), ("c2w", c2w, (n, 4, 4)))
        for name, arr, shape in (("masks", masks, (n, h, w)), ("flows_fwd", flows_fwd, (n - 1, h, w, 2)),
                                 ("flows_bwd", flows_bwd, (n - 1, h, w, 2)), *cameras):
            if np.shape(arr) != shape:
                raise InputError(f"MaskEditor: '{name}' must have shape {shape}, got {np.shape(arr)}")
        self.frames = frames
        self.segmenter = segmenter
        self._auto = masks.astype(bool)
        self._masks = self._auto.copy()
        self._fwd = torch.as_tensor(np.asarray(flows_fwd), dtype=torch.float32)
        self._bwd = torch.as_tensor(np.asarray(flows_bwd), dtype=torch.float32)
        self._clicks: dict[int, list[_Click]] = {}
        self._cameras = None if K is None else tuple(torch.as_tensor(np.asarray(a), dtype=torch.float64)
                                                     for a in (K, c2w))
        self._base: dict[int, np.ndarray] = {}
        self.last_edited: int | None = None

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def masks(self) -> np.ndarray:
        """Current masks (N, H, W) bool (a copy)."""
        return self._masks.copy()

    def mask(self, frame: int) -> np.ndarray:
        """Current mask of ``frame`` (H, W) bool (a copy)."""
        return self._masks[self._frame(frame)].copy()

    def points(self, frame: int) -> list[tuple[float, float, int]]:
        """Clicks on ``frame`` in order: (x, y, label) with label 1 include / 0 exclude."""
        return [(c.x, c.y, c.label) for c in self._clicks.get(self._frame(frame), [])]

    def add_point(self, frame: int, x: float, y: float, label: int) -> np.ndarray:
        """Click (x, y) on ``frame`` with label 1 (include) or 0 (exclude). -> the frame's new mask (H, W)."""
        frame = self._frame(frame)
        check_prompt([[x, y]], [label], self.frames.shape[1:3])
        base = self._base.setdefault(frame, self._masks[frame].copy())
        clicks = self._clicks.setdefault(frame, [])
        pts = np.array([[c.x, c.y] for c in clicks] + [[x, y]], float)
        labels = np.array([c.label for c in clicks] + [int(label)])
        mask = np.asarray(self.segmenter.segment(frame, self.frames[frame], pts, labels, base, self._flow(frame)), bool)
        clicks.append(_Click(float(x), float(y), int(label), mask))
        self._masks[frame] = mask
        self.last_edited = frame
        return mask.copy()

    def undo(self, frame: int) -> np.ndarray:
        """Drop the last click on ``frame`` (no-op without clicks). -> the frame's mask (H, W)."""
        frame = self._frame(frame)
        clicks = self._clicks.get(frame)
        if clicks:
            clicks.pop()
            self._masks[frame] = clicks[-1].mask if clicks else self._base[frame]
            if not clicks:
                del self._clicks[frame]
        return self.mask(frame)

    def clear(self, frame: int) -> np.ndarray:
        """Drop every click on ``frame``: back to the mask it had before them. -> (H, W)."""
        frame = self._frame(frame)
        if frame in self._base:
            self._masks[frame] = self._base[frame]
        self._clicks.pop(frame, None)
        return self.mask(frame)

    def reset(self, frame: int) -> np.ndarray:
        """Back to the automatic mask, clicks dropped (also undoes what propagation wrote). -> (H, W)."""
        frame = self._frame(frame)
        self._clicks.pop(frame, None)
        self._base.pop(frame, None)
        self._masks[frame] = self._auto[frame]
        return self.mask(frame)

    def propagate(self, from_frame: int | None = None, reprompt_every: int = 1,
                  progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Carry the edit of ``from_frame`` (default: the last clicked frame) forward and backward to every
        frame. The segmenter is re-prompted on every ``reprompt_every``-th frame from the source (SAM on CPU
        costs ~12 s per new frame embedding; the frames between keep the flow-carried mask).
        ``progress(fraction)`` after each frame. -> masks (N, H, W) bool (a copy)."""
        start = self.last_edited if from_frame is None else self._frame(from_frame)
        if start is None:
            return self.masks
        n, done = self.n_frames, 0
        for step in (1, -1):
            mask, clicks, carrying = self._masks[start], self._click_array(start), True
            limit, colours = self._growth_limit(start), self._addition_colours(start)
            for j in range(start + step, n if step > 0 else -1, step):
                i = j - step
                # flow j -> i pulls frame i's fields into frame j; flow i -> j moves the clicks
                f_ji, f_ij = (self._bwd[i], self._fwd[i]) if step > 0 else (self._fwd[j], self._bwd[j])
                if j in self._clicks:  # the user's own edit wins and becomes the new source
                    mask, clicks, carrying = self._masks[j], self._click_array(j), True
                    limit, colours = self._growth_limit(j), self._addition_colours(j)
                elif not carrying or not self._flow_holds(f_ij, f_ji):
                    carrying = False  # past a cut, what the flow carried would land anywhere
                else:
                    still = self._still(i, j, f_ij), self._still(j, i, f_ji)
                    clicks = self._same_look(move_points(on_still(clicks, still[0]), f_ij, f_ji), j)
                    reprompt = abs(j - start) % max(1, reprompt_every) == 0
                    mask = self._carry(mask, i, j, f_ji, clicks if reprompt else clicks[:0], limit, still)
                    mask &= self._auto[j] | colours.fits(self.frames[j])
                    self._masks[j] = mask
                done += 1
                if progress:
                    progress(done / max(n - 1, 1))
        return self.masks

    def _carry(self, mask_i: np.ndarray, i: int, j: int, f_ji: torch.Tensor, clicks: np.ndarray,
               limit: float, still: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Frame j's mask from frame i's: the edit (what frame i's mask added to / removed from its automatic
        mask) is pulled along the flow and applied to frame j's automatic mask. With clicks the flow carried
        here, the segmenter re-prompts frame j's automatic mask with them instead (recomputed, not accumulated:
        carried additions would drift and grow frame by frame), and what it adds / removes only counts near
        the carried addition / removal: a moved click that lands elsewhere cannot repaint the frame. A removal
        only holds where frame j still shows what frame i showed there: an object that moved onto a removed
        static spot stays. ``still``: the static pixels (H, W) bool of frames i and j (:meth:`_still`); only those
        of frame i are carried, only those of frame j removed by a re-prompt. Each re-prompt may reach a little
        past the carried addition, so over many frames the addition could creep into the background
        (handheld-room: 6 % -> 27 % of the frame over 30 frames); an addition over ``limit`` pixels (max_growth x
        the source frame's) keeps what the flow carried instead."""
        fields = np.concatenate([np.stack([mask_i & ~self._auto[i], self._auto[i] & ~mask_i & still[0]], -1),
                                 self.frames[i]], -1).astype(np.float32)
        pulled = warp_field(torch.from_numpy(fields)[None], f_ji[None])[0].numpy()
        added, removed = (pulled[..., :2] > 0.5).transpose(2, 0, 1)
        removed &= np.abs(pulled[..., 2:] - self.frames[j]).mean(-1) < self.same_colour
        auto = self._auto[j]
        if len(clicks) == 0:
            return (auto & ~removed) | added
        seg = np.asarray(self.segmenter.segment(j, self.frames[j], clicks[:, :2], clicks[:, 2].astype(int), auto,
                                                self._flow(j)), bool)
        reach = self._edit_reach_px()
        grown = seg & near(added, reach)
        return (auto & ~(~seg & near(removed, reach) & still[1])) | (grown if grown.sum() <= limit else added)

    def _edit_reach_px(self) -> int:
        """``edit_reach`` in pixels of these frames (at least one)."""
        return max(1, round(self.edit_reach * max(self.frames.shape[1:3])))

    def _growth_limit(self, frame: int) -> float:
        """The most pixels a carried addition may cover: max_growth x what the frame's mask adds to its automatic
        one (at least one pixel's worth)."""
        return self.max_growth * max(int((self._masks[frame] & ~self._auto[frame]).sum()), 1)

    def _addition_colours(self, frame: int) -> ColourOdds:
        """Colour model of what the frame's mask adds to its automatic one against the static surroundings
        (within ``edit_reach`` of the addition): a carried addition that slides off its object onto the
        background (the flow of an untextured face following the wall behind it) loses the pixels whose colour
        the background explains better."""
        added = self._masks[frame] & ~self._auto[frame]
        around = near(added, self._edit_reach_px()) & ~self._masks[frame]
        return ColourOdds(self.frames[frame], added, around, min_share=self.addition_colour_share)

    def _flow_holds(self, f_ij: torch.Tensor, f_ji: torch.Tensor) -> bool:
        """Whether the flow between two frames (H, W, 2) each way holds as a whole (see min_flow_agreement)."""
        tol = 2.0 * max(f_ij.shape[:2]) / REFERENCE_SIDE
        return float(consistent(f_ij[None], f_ji[None], tol).float().mean()) >= self.min_flow_agreement

    def _flow(self, frame: int) -> np.ndarray | None:
        """The frame's flow to its next frame (the last frame: to its previous one), for the segmenter."""
        if self.n_frames < 2:
            return None
        return (self._fwd[frame] if frame < self.n_frames - 1 else self._bwd[frame - 1]).numpy()

    def _click_array(self, frame: int) -> np.ndarray:
        """The frame's clicks with the colour under each: (P, 6) [x, y, label, r, g, b]."""
        points = np.array(self.points(frame), float).reshape(-1, 3)
        return np.concatenate([points, self._colours_at(points, frame)], 1)

    def _same_look(self, clicks: np.ndarray, frame: int) -> np.ndarray:
        """The carried clicks (P, 6) that still show the colour they were given on (within ``same_colour``): one
        that slid off its surface (an exclude click beside an object whose flow it took) would prompt the wrong
        thing (handheld-room: an exclude click on a halo sliver, carried onto the object, took 0.97 -> 0.89 IoU)."""
        if len(clicks) == 0:
            return clicks
        drift = np.abs(self._colours_at(clicks, frame) - clicks[:, 3:6]).mean(1)
        return clicks[drift < self.same_colour]

    def _still(self, i: int, j: int, flow: torch.Tensor) -> np.ndarray:
        """Pixels of frame i whose flow to frame j (H, W, 2) keeps within ``max_epipolar`` of their epipolar
        lines (every pixel without cameras) -> (H, W) bool. What an exclude click removes is static; a removed
        pixel that moves otherwise was taken along by the object beside it, and carried on with that object it
        cuts the object away frame after frame (handheld-room: a removal on the wallpaper beside a tumbling cube,
        0.958 -> 0.926 IoU). The neighbours' flow is no reference: under parallax a still ball moves otherwise
        than the floor and the wall around it."""
        h, w = flow.shape[:2]
        if self._cameras is None:
            return np.ones((h, w), bool)
        K, c2w = self._cameras
        res = epipolar_residual(flow[None], K[i:i + 1], c2w[i:i + 1], K[j:j + 1], c2w[j:j + 1])[0]
        return (res <= self.max_epipolar * max(h, w) / REFERENCE_SIDE).numpy()

    def _colours_at(self, points: np.ndarray, frame: int) -> np.ndarray:
        """Bilinear colours of ``frame`` at points (P, >= 2) [x, y, ...] -> (P, 3)."""
        image = torch.as_tensor(self.frames[frame], dtype=torch.float32).permute(2, 0, 1)[None]
        uv = torch.as_tensor(points[:, :2], dtype=torch.float32)[None]
        return sample_image(image, uv)[0].T.numpy().astype(float)

    def _frame(self, frame) -> int:
        if not isinstance(frame, (int, np.integer)) or not 0 <= frame < self.n_frames:
            raise InputError(f"MaskEditor: frame must be an integer in [0, {self.n_frames - 1}], got {frame!r}")
        return int(frame)


def on_still(points: np.ndarray, still: np.ndarray) -> np.ndarray:
    """The clicks (P, C >= 3) [x, y, label, ...], all inside the image, without the exclude clicks off ``still``
    (H, W) bool (nearest pixel): an exclude click sits on something static, one that moves otherwise was picked up
    by an object."""
    if len(points) == 0:
        return points
    return points[(points[:, 2] == 1) | still[rows_cols(points)]]


def move_points(points: np.ndarray, flow_ij: torch.Tensor, flow_ji: torch.Tensor, tol: float = 2.0) -> np.ndarray:
    """Move clicks of frame i into frame j along the flow; clicks that leave the image or whose flow fails the
    forward-backward check (occluded) are dropped. points (P, C >= 3) [x, y, label, ...] (the columns after x, y
    are carried as they are), flows (H, W, 2) -> (Q, C)."""
    if len(points) == 0:
        return points
    h, w = flow_ij.shape[:2]
    uv = torch.as_tensor(points[:, :2], dtype=torch.float32)
    moved = uv + sample_image(flow_ij.permute(2, 0, 1)[None], uv[None])[0].T
    back = moved + sample_image(flow_ji.permute(2, 0, 1)[None], moved[None])[0].T
    inside = (moved[:, 0] >= 0) & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= h - 1)
    keep = (inside & ((back - uv).abs().sum(-1) <= tol)).numpy()
    return np.concatenate([moved.numpy()[keep], points[keep, 2:]], 1)
