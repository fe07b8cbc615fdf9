"""Plain regions judged by the motion evidence on their outline (pgdvs/reconstruct/outlined_regions.py)."""
import numpy as np
import pytest

from pgdvs.errors import InputError
from pgdvs.reconstruct.outlined_regions import outlined_regions

H, W = 180, 240  # a region may cover 0.46 % to 5 % of this frame: 199 to 2160 px, discs of radius 8 to 26


def _scene(cy=90, cx=120, r=20.0):
    """A plain disc in textured surroundings and the 2 px ring of textured pixels around it (its edge).
    -> distance to the centre (H, W), textured (H, W) bool, ring (H, W) bool."""
    yy, xx = np.mgrid[0:H, 0:W]
    dist = np.hypot(yy - cy, xx - cx)
    return dist, dist > r, (dist > r) & (dist <= r + 2)


def test_a_plain_region_ringed_by_evidence_is_taken_whole_with_its_band():
    dist, textured, ring = _scene()
    out = outlined_regions(ring, textured, band=2)
    assert out[dist <= 20].all() and out[dist <= 21.5].all()  # the region and its band (<= 2 px away)
    assert not out[dist > 22.5].any()


def test_partial_outlines_are_left_alone():
    dist, textured, ring = _scene()
    yy, xx = np.mgrid[0:H, 0:W]
    angle = np.arctan2(yy - 90, xx - 120)
    quarter = ring & (angle > 0) & (angle < np.pi / 2)
    assert not outlined_regions(quarter, textured, band=2).any()
    half = ring & (angle > 0)
    assert outlined_regions(half, textured, band=2, min_cover=0.45).any()
    assert not outlined_regions(half, textured, band=2).any()  # half the outline: under the default 0.55
    most = ring & (angle > -np.pi / 3)
    assert outlined_regions(most, textured, band=2).any()  # two thirds


@pytest.mark.parametrize("radius", [5.0, 30.0])
def test_regions_too_small_or_too_large_are_left_alone(radius):
    dist, textured, ring = _scene(r=radius)
    assert not outlined_regions(ring, textured, band=2).any()


def test_regions_cut_by_the_frame_border_are_left_alone():
    dist, textured, ring = _scene(cx=10)
    assert not outlined_regions(ring, textured, band=2).any()
    assert outlined_regions(*_scene(cx=30)[2:0:-1], band=2).any()  # the same disc clear of the border


def test_band_pixels_count_for_their_nearest_region_only():
    """Two plain discs side by side; evidence rings only the left one: only it is taken."""
    left, right = _scene(cx=60, r=14.0), _scene(cx=180, r=14.0)
    out = outlined_regions(left[2], left[1] & right[1], band=2)
    assert out[left[0] <= 14].all() and not out[right[0] <= 16].any()


def test_bad_inputs_name_the_problem():
    dist, textured, ring = _scene()
    with pytest.raises(InputError, match="outlined_regions"):
        outlined_regions(ring[:, :-1], textured, band=2)
    with pytest.raises(InputError, match="band"):
        outlined_regions(ring, textured, band=0)
