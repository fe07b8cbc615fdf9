"""Camera paths: presets (``presets/*.yaml``) -> ``CameraPath`` (times, c2w, K) for a Scene.

    presets = load_presets()                      # {name: Preset}; InputError names any invalid file
    path = make_path(presets["bullet-time"], scene, frames=48)
    write_nerfstudio(path, "camera_path.json", scene.n_frames)
    picture = plot_path(path, scene.c2w)          # (H, W, 3) uint8 preview

Names are imported on first use so that ``python -m pgdvs --help`` does not pay for scipy and matplotlib.
"""
import importlib

_EXPORTS = {
    "interpolate": ("interpolate_intrinsics", "interpolate_poses", "slerp", "smooth_poses"),
    "nerfstudio": ("from_nerfstudio", "read_nerfstudio", "to_nerfstudio", "write_nerfstudio"),
    "paths": ("CameraPath", "SceneScale", "make_path", "scene_scale"),
    "plot": ("plot_path",),
    "presets": ("PRESETS_DIR", "load_preset", "load_presets", "scan_presets"),
    "schema": ("Preset", "parse_preset"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
