"""Original PGDVS per-scene layout: export -> import round trip, K handling, precise errors, atomic export."""
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pgdvs.errors import InputError, SceneFormatError
from pgdvs.geometry import look_at, rescale_intrinsics
from pgdvs.layout import export_pgdvs_layout, import_pgdvs_layout
from pgdvs.scene import Scene
from pgdvs.warp import flow_consistency

N, H, W = 3, 12, 16


def make_scene(seed=0, flows=True) -> Scene:
    rng = np.random.default_rng(seed)
    eye = torch.tensor([[0.1 * i, 0.0, -2.0] for i in range(N)], dtype=torch.float64)
    c2w = look_at(eye, torch.zeros(N, 3, dtype=torch.float64), torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    K = np.tile(np.array([[20.0, 0, 7.5], [0, 21.0, 5.5], [0, 0, 1]]), (N, 1, 1))
    K[1, 0, 0] = 22.0  # per-frame intrinsics survive too
    return Scene(
        rgb=rng.integers(0, 256, (N, H, W, 3)).astype(np.float32) / 255,  # already uint8-representable
        K=K, c2w=c2w.numpy(),
        depth=rng.uniform(0.5, 4.0, (N, H, W)).astype(np.float32),
        dyn_mask=rng.random((N, H, W)) > 0.7,
        flow_fwd=rng.normal(0, 2, (N - 1, H, W, 2)).astype(np.float32) if flows else None,
        flow_bwd=rng.normal(0, 2, (N - 1, H, W, 2)).astype(np.float32) if flows else None,
        meta={"frame_ids": ["00000", "00001", "00002"], "fps": 10},
    )


@pytest.fixture
def exported(tmp_path) -> tuple[Scene, Path]:
    scene = make_scene()
    return scene, export_pgdvs_layout(scene, tmp_path / "scene")


def test_export_writes_the_original_file_layout(exported):
    scene, root = exported
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted(
        [f"rgbs/{s}.png" for s in scene.frame_ids] + [f"poses/{s}.npz" for s in scene.frame_ids]
        + [f"depths/{s}.npz" for s in scene.frame_ids] + [f"masks/final/{s}_final.png" for s in scene.frame_ids]
        + [f"flows/interval_1/{a}_{b}.npz" for a, b in
           [("00000", "00001"), ("00001", "00000"), ("00001", "00002"), ("00002", "00001")]])
    pose = np.load(root / "poses/00001.npz")
    assert pose["K"].shape == (4, 4) and np.array_equal(pose["K"][:3, :3], scene.K[1])
    assert np.array_equal(pose["K"][3], [0, 0, 0, 1]) and np.array_equal(pose["K"][:3, 3], [0, 0, 0])
    assert np.array_equal(pose["c2w"], scene.c2w[1])
    png = cv2.imread(str(root / "rgbs/00002.png"))[..., ::-1]  # stored as a normal RGB PNG
    assert np.array_equal(png, np.round(scene.rgb[2] * 255).astype(np.uint8))
    mask = cv2.imread(str(root / "masks/final/00000_final.png"), cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(mask)) <= {0, 255} and np.array_equal(mask > 0, scene.dyn_mask[0])
    flow = np.load(root / "flows/interval_1/00002_00001.npz")
    assert np.array_equal(flow["flow"], scene.flow_bwd[1])
    expected = flow_consistency(torch.from_numpy(scene.flow_bwd), torch.from_numpy(scene.flow_fwd))[1].numpy()
    assert np.allclose(flow["coord_diff"], expected)


def test_round_trip_gives_identical_arrays(exported):
    scene, root = exported
    back = import_pgdvs_layout(root)
    for name in ("rgb", "K", "c2w", "depth", "dyn_mask", "flow_fwd", "flow_bwd"):
        assert np.array_equal(getattr(back, name), getattr(scene, name)), name
    assert back.frame_ids == scene.frame_ids
    assert back.rgb.dtype == np.float32 and back.dyn_mask.dtype == bool


def test_round_trip_quantises_rgb_and_skips_absent_flows(tmp_path):
    scene = make_scene(flows=False)
    scene.rgb = np.clip(scene.rgb + 0.3 / 255, 0, 1)  # off the uint8 grid
    back = import_pgdvs_layout(export_pgdvs_layout(scene, tmp_path / "s"))
    assert np.array_equal(back.rgb, np.round(scene.rgb * 255).astype(np.float32) / 255)
    assert back.flow_fwd is None and back.flow_bwd is None
    assert not (tmp_path / "s" / "flows").exists()


def test_consistent_flows_give_zero_coord_diff(tmp_path):
    scene = make_scene()
    scene.flow_fwd = np.zeros_like(scene.flow_fwd)
    scene.flow_fwd[..., 0] = 1.0  # everything moves one pixel right ...
    scene.flow_bwd = -scene.flow_fwd  # ... and back
    root = export_pgdvs_layout(scene, tmp_path / "s")
    diff = np.load(root / "flows/interval_1/00000_00001.npz")["coord_diff"]
    assert np.abs(diff[:, : W - 1]).max() < 1e-6  # the last column leaves the image (zero padding)


def test_low_resolution_depth_is_resized_nearest_and_K_is_for_rgb(exported):
    scene, root = exported
    small = {}
    for i, stem in enumerate(scene.frame_ids):
        small[stem] = scene.depth[i, ::2, ::2].copy()
        np.savez(root / "depths" / f"{stem}.npz", depth=small[stem])
    back = import_pgdvs_layout(root)
    assert np.array_equal(back.depth[0], np.repeat(np.repeat(small["00000"], 2, 0), 2, 1))
    assert np.array_equal(back.K, scene.K)  # the default: K describes the RGB resolution (as the original)
    rescaled = import_pgdvs_layout(root, k_at="depth")  # K was written for the depth resolution
    expected = rescale_intrinsics(torch.from_numpy(scene.K), (H // 2, W // 2), (H, W)).numpy()
    assert np.allclose(rescaled.K, expected)
    assert rescaled.K[0, 0, 0] == pytest.approx(40.0) and rescaled.K[0, 0, 2] == pytest.approx(15.5)
    with pytest.raises(InputError, match="k_at"):
        import_pgdvs_layout(root, k_at="flow")


def test_legacy_poses_npy(exported):
    scene, root = exported
    rows = [np.concatenate([scene.c2w[i].ravel(), np.pad(scene.K[i], ((0, 1), (0, 1))).ravel()]) for i in range(N)]
    rows = np.stack(rows)
    rows[:, 31] = 1
    for f in (root / "poses").iterdir():
        f.unlink()
    (root / "poses").rmdir()
    np.save(root / "poses.npy", rows)
    back = import_pgdvs_layout(root)
    assert np.array_equal(back.c2w, scene.c2w) and np.array_equal(back.K, scene.K)
    np.save(root / "poses.npy", rows[:2])
    with pytest.raises(SceneFormatError, match=r"poses\.npy: field 'poses' has shape \(2, 32\), expected 3x32"):
        import_pgdvs_layout(root)


def test_jpg_frames_and_lower_resolution_masks(exported):
    scene, root = exported
    for stem in scene.frame_ids:
        png = root / "rgbs" / f"{stem}.png"
        cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)))
        png.unlink()
        small = (scene.dyn_mask[int(stem), ::2, ::2] * 255).astype(np.uint8)
        cv2.imwrite(str(root / "masks/final" / f"{stem}_final.png"), small)
    back = import_pgdvs_layout(root)
    jpg = cv2.imread(str(root / "rgbs/00001.jpg"))[..., ::-1]
    assert np.array_equal(back.rgb[1], jpg.astype(np.float32) / 255)  # lossy, but read in RGB order
    assert np.array_equal(back.dyn_mask[1], np.repeat(np.repeat(scene.dyn_mask[1, ::2, ::2], 2, 0), 2, 1))


# ---------------------------------------------------------------- malformed folders


def _drop(root: Path, rel: str):
    target = root / rel
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()


@pytest.mark.parametrize("rel, message", [
    ("rgbs", r"rgbs: missing folder"),
    ("depths", r"depths: missing folder"),
    ("masks", r"masks/final: missing folder"),
    ("poses", r"poses: missing folder \(and no legacy poses\.npy\)"),
    ("poses/00001.npz", r"poses: stem mismatch with rgbs/: no 00001\.npz for rgb stem\(s\) \['00001'\]"),
    ("masks/final/00002_final.png", r"final: stem mismatch with rgbs/: no 00002_final\.png"),
    ("flows/interval_1/00002_00001.npz", r"00002_00001\.npz: missing"),
])
def test_missing_parts_are_named(exported, rel, message):
    _, root = exported
    _drop(root, rel)
    with pytest.raises(SceneFormatError, match=message):
        import_pgdvs_layout(root)


def test_missing_scene_folder(tmp_path):
    with pytest.raises(SceneFormatError, match="no such directory"):
        import_pgdvs_layout(tmp_path / "nope")


def test_extra_stem_is_a_mismatch(exported):
    _, root = exported
    np.savez(root / "depths" / "00007.npz", depth=np.ones((H, W), np.float32))
    with pytest.raises(SceneFormatError, match=r"depths: stem mismatch .*\['00007'\] have no image in rgbs/"):
        import_pgdvs_layout(root)


@pytest.mark.parametrize("rel, arrays, message", [
    ("poses/00001.npz", {"c2w": np.eye(4)[:3], "K": np.eye(4)}, r"00001\.npz: field 'c2w' has shape \(3, 4\)"),
    ("poses/00001.npz", {"c2w": np.eye(4)}, r"00001\.npz: field 'K' is missing"),
    ("poses/00000.npz", {"c2w": np.full((4, 4), np.nan), "K": np.eye(4)}, r"00000\.npz: field 'c2w' contains NaN"),
    ("poses/00000.npz", {"c2w": np.eye(4), "K": np.eye(2)}, r"00000\.npz: field 'K' has shape \(2, 2\)"),
    ("depths/00002.npz", {"depth": np.full((H, W), np.inf, np.float32)}, r"00002\.npz: field 'depth' contains NaN"),
    ("depths/00002.npz", {"depth": np.zeros((H, W), np.float32)}, r"00002\.npz: field 'depth' must be > 0"),
    ("depths/00002.npz", {"depth": np.ones((H, W, 2), np.float32)}, r"00002\.npz: field 'depth' has shape"),
    ("depths/00001.npz", {"depth": np.ones((H // 2, W // 2), np.float32)}, r"00001\.npz: field 'depth' has shape"),
    ("flows/interval_1/00000_00001.npz", {"flow": np.zeros((H // 2, W // 2, 2), np.float32)},
     r"00000_00001\.npz: field 'flow' is 8x6, the layout requires the RGB resolution 16x12"),
    ("flows/interval_1/00000_00001.npz", {"flow": np.zeros((H, W, 2), np.float32),
                                          "coord_diff": np.zeros((H, W, 3), np.float32)},
     r"00000_00001\.npz: field 'coord_diff' has shape"),
    ("flows/interval_1/00001_00000.npz", {"coord_diff": np.zeros((H, W, 2), np.float32)},
     r"00001_00000\.npz: field 'flow' is missing"),
])
def test_bad_arrays_name_file_and_field(exported, rel, arrays, message):
    _, root = exported
    np.savez(root / rel, **arrays)
    with pytest.raises(SceneFormatError, match=message):
        import_pgdvs_layout(root)


def test_unreadable_files(exported):
    _, root = exported
    (root / "rgbs/00001.png").write_bytes(b"not a png")
    with pytest.raises(SceneFormatError, match=r"rgbs/00001\.png: unreadable image"):
        import_pgdvs_layout(root)


def test_corrupt_npz(exported):
    _, root = exported
    (root / "poses/00002.npz").write_bytes(b"garbage")
    with pytest.raises(SceneFormatError, match=r"poses/00002\.npz: unreadable"):
        import_pgdvs_layout(root)


def test_frames_of_different_sizes(exported):
    _, root = exported
    cv2.imwrite(str(root / "rgbs/00002.png"), np.zeros((H, W + 2, 3), np.uint8))
    with pytest.raises(SceneFormatError, match=r"00002\.png: size 18x12 differs from 00000\.png \(16x12\)"):
        import_pgdvs_layout(root)


def test_scene_level_validation_names_the_folder(exported):
    _, root = exported
    np.savez(root / "poses/00001.npz", c2w=np.diag([2.0, 1, 1, 1]), K=np.eye(4))
    with pytest.raises(SceneFormatError, match=r"scene: field 'c2w' rotation is not orthonormal"):
        import_pgdvs_layout(root)


# ---------------------------------------------------------------- export errors and atomicity


def test_export_rejects_one_directional_flow(tmp_path):
    scene = make_scene()
    scene.flow_bwd = None
    with pytest.raises(InputError, match="both flow_fwd and flow_bwd"):
        export_pgdvs_layout(scene, tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_bad_stems(tmp_path):
    scene = make_scene()
    scene.meta["frame_ids"] = ["a", "a", "b"]
    with pytest.raises(InputError, match="unique"):
        export_pgdvs_layout(scene, tmp_path / "s")
    scene.meta["frame_ids"] = ["a", "../b", "c"]
    with pytest.raises(InputError, match=r"\.\./b"):
        export_pgdvs_layout(scene, tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_export_failure_midway_leaves_nothing_and_keeps_the_old_folder(tmp_path, monkeypatch):
    old = export_pgdvs_layout(make_scene(seed=1), tmp_path / "s")
    before = np.load(old / "depths/00000.npz")["depth"].copy()
    calls = {"n": 0}
    real_savez = np.savez

    def failing_savez(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        return real_savez(*args, **kwargs)

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        export_pgdvs_layout(make_scene(seed=2), tmp_path / "s")
    with pytest.raises(OSError, match="disk full"):
        calls["n"] = 0
        export_pgdvs_layout(make_scene(seed=2), tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temp folders, no half-written "fresh"
    assert np.array_equal(np.load(old / "depths/00000.npz")["depth"], before)
