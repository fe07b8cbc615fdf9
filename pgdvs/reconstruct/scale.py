"""The image size at which the reconstruction's pixel thresholds and radii are stated: each stage scales them by
max(H, W) / REFERENCE_SIDE, so one setting means the same on a small preview and on a full-size clip."""

REFERENCE_SIDE = 480  # px, the longer image side
