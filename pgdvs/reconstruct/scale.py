"""The image size at which the reconstruction's pixel thresholds and radii are stated: each stage scales them by
max(H, W) / REFERENCE_SIDE, so one setting means the same on a small preview and on a full-size clip."""

REFERENCE_SIDE = 480  # px, the longer image side


def pixels_at(px: float, hw: tuple[int, ...], least: int = 1) -> int:
    """``px`` stated at REFERENCE_SIDE, for an image whose first two sides are ``hw`` (H, W): rounded, at least
    ``least``."""
    return max(least, round(px * max(hw[:2]) / REFERENCE_SIDE))
