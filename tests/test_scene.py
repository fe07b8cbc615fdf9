"""Scene folder: save/load round trip, precise errors for malformed folders, atomic saves."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pgdvs.errors import InputError, SceneFormatError
from pgdvs.geometry import look_at
from pgdvs.scene import SCENE_ARRAYS, SCENE_JSON, SCENE_VERSION, EvalViews, GroundTruth, Scene

N, H, W, M = 3, 10, 14, 2


def _cameras(n, rng):
    eye = torch.from_numpy(rng.normal(0, 0.3, (n, 3)) + [0, 0, -3])
    c2w = look_at(eye, torch.zeros(n, 3, dtype=torch.float64), torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    K = np.tile(np.array([[18.0, 0, 6.5], [0, 18.0, 4.5], [0, 0, 1]]), (n, 1, 1))
    return c2w.numpy(), K


def make_scene(seed=0) -> Scene:
    rng = np.random.default_rng(seed)
    c2w, K = _cameras(N, rng)
    vc2w, vK = _cameras(M, rng)
    views = EvalViews(
        time=np.array([0.0, 1.5]), camera=np.array([3, -1]), c2w=vc2w, K=vK,
        rgb=rng.random((M, H, W, 3)).astype(np.float32), depth=rng.uniform(1, 3, (M, H, W)).astype(np.float32),
        dyn_mask=rng.random((M, H, W)) > 0.5, covis=rng.random((M, H, W)) > 0.2,
    )
    gt = GroundTruth(c2w=c2w.copy(), K=K.copy(), depth=rng.uniform(1, 3, (N, H, W)).astype(np.float32),
                     dyn_mask=rng.random((N, H, W)) > 0.5, views=views)
    return Scene(
        rgb=rng.random((N, H, W, 3)).astype(np.float32), K=K, c2w=c2w,
        depth=rng.uniform(1, 3, (N, H, W)).astype(np.float32), dyn_mask=rng.random((N, H, W)) > 0.6,
        flow_fwd=rng.normal(0, 1, (N - 1, H, W, 2)).astype(np.float32),
        flow_bwd=rng.normal(0, 1, (N - 1, H, W, 2)).astype(np.float32),
        gt=gt, meta={"source": "test", "fps": 12.5, "frame_ids": ["a", "b", "c"], "nested": {"k": [1, 2]}},
    )


def test_round_trip(tmp_path):
    scene = make_scene()
    back = Scene.load(scene.save(tmp_path / "s"))
    assert np.array_equal(back.rgb, np.round(scene.rgb * 255).astype(np.float32) / 255)  # stored as uint8
    for name in ("K", "c2w", "depth", "dyn_mask", "flow_fwd", "flow_bwd"):
        assert np.array_equal(getattr(back, name), getattr(scene, name)), name
    for name in ("c2w", "K", "depth", "dyn_mask"):
        assert np.array_equal(getattr(back.gt, name), getattr(scene.gt, name)), name
    for name in ("time", "camera", "c2w", "K", "rgb", "depth", "dyn_mask", "covis"):
        assert np.array_equal(getattr(back.gt.views, name), getattr(scene.gt.views, name)), name
    assert back.meta == scene.meta and back.frame_ids == ["a", "b", "c"] and back.hw == (H, W)
    info = json.loads((tmp_path / "s" / SCENE_JSON).read_text())
    assert info["version"] == SCENE_VERSION and info["shapes"]["rgb"] == [N, H, W, 3]


def test_round_trip_without_optional_parts(tmp_path):
    scene = make_scene()
    scene.flow_fwd = scene.flow_bwd = scene.gt = None
    scene.meta = {}
    back = Scene.load(scene.save(tmp_path / "s"))
    assert back.flow_fwd is None and back.gt is None and back.frame_ids == ["00000", "00001", "00002"]


def test_views_without_covis_round_trip(tmp_path):
    scene = make_scene()
    scene.gt.views.covis = None
    back = Scene.load(scene.save(tmp_path / "s"))
    assert back.gt.views.covis is None and np.array_equal(back.gt.views.rgb, scene.gt.views.rgb)


# ---------------------------------------------------------------- malformed folders


@pytest.fixture
def saved(tmp_path) -> Path:
    return make_scene().save(tmp_path / "s")


def _rewrite_arrays(folder: Path, **changes):
    with np.load(folder / SCENE_ARRAYS) as data:
        arrays = {k: data[k] for k in data.files}
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    np.savez(folder / SCENE_ARRAYS, **arrays)


def test_missing_folder_and_files(tmp_path, saved):
    with pytest.raises(SceneFormatError, match="not a scene folder"):
        Scene.load(tmp_path / "nope")
    (saved / SCENE_ARRAYS).unlink()
    with pytest.raises(SceneFormatError, match=rf"{SCENE_ARRAYS}: missing"):
        Scene.load(saved)


def test_bad_json(saved):
    (saved / SCENE_JSON).write_text("{not json")
    with pytest.raises(SceneFormatError, match=rf"{SCENE_JSON}: not valid JSON"):
        Scene.load(saved)


def test_wrong_version(saved):
    info = json.loads((saved / SCENE_JSON).read_text())
    info["version"] = 99
    (saved / SCENE_JSON).write_text(json.dumps(info))
    with pytest.raises(SceneFormatError, match=rf"field 'version' is 99, this release reads {SCENE_VERSION}"):
        Scene.load(saved)


def test_corrupt_arrays(saved):
    (saved / SCENE_ARRAYS).write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(SceneFormatError, match=rf"{SCENE_ARRAYS}: unreadable"):
        Scene.load(saved)


@pytest.mark.parametrize("changes, message", [
    ({"depth": None}, r"field 'depth' is missing"),
    ({"rgb": np.zeros((N, H, W, 3), np.float32)}, r"field 'rgb' must be uint8, got float32"),
    ({"rgb": np.zeros((N, H, W), np.uint8)}, r"field 'rgb' has shape \(3, 10, 14\), expected \?x\?x\?x3"),
    ({"depth": np.ones((N, H, W + 1), np.float32)}, r"field 'depth' has shape \(3, 10, 15\), expected 3x10x14"),
    ({"depth": np.zeros((N, H, W), np.float32)}, r"field 'depth' must be > 0 everywhere"),
    ({"K": np.full((N, 3, 3), np.nan)}, r"field 'K' contains NaN or infinite values"),
    ({"K": np.zeros((N, 3, 3))}, r"field 'K' has a non-positive focal length"),
    ({"c2w": np.tile(np.diag([1.0, 2, 1, 1]), (N, 1, 1))}, r"field 'c2w' rotation is not orthonormal"),
    ({"dyn_mask": np.zeros((N, H, W), np.float32)}, r"field 'dyn_mask' has dtype float32, expected kind 'b'"),
    ({"flow_fwd": np.zeros((N, H, W, 2), np.float32)}, r"field 'flow_fwd' has shape \(3, 10, 14, 2\), expected 2x"),
    ({"rgb": np.zeros((1, H, W, 3), np.uint8)}, r"field 'rgb' holds 1 frame\(s\); a scene needs at least 2"),
    ({"view_time": np.array([0.0, 7.0])}, r"field 'view_time' has values above 2.0"),
    ({"view_covis": np.ones((M, H, W + 1), bool)}, r"field 'view_covis' has shape"),
    ({"gt_K": None}, r"field 'gt_K' must be given together with its pair"),
])
def test_bad_fields_name_file_and_field(saved, changes, message):
    _rewrite_arrays(saved, **changes)
    with pytest.raises(SceneFormatError, match=rf"{SCENE_ARRAYS}: " + message):
        Scene.load(saved)


def test_frame_ids_count_is_checked(saved):
    info = json.loads((saved / SCENE_JSON).read_text())
    info["meta"]["frame_ids"] = ["a"]
    (saved / SCENE_JSON).write_text(json.dumps(info))
    with pytest.raises(SceneFormatError, match=r"field 'meta.frame_ids' has 1 entries for 3 frames"):
        Scene.load(saved)


def test_errors_are_input_errors():
    assert issubclass(SceneFormatError, InputError)


# ---------------------------------------------------------------- atomic saves


def test_invalid_scene_is_not_saved(tmp_path):
    scene = make_scene()
    scene.depth[0, 0, 0] = -1
    with pytest.raises(SceneFormatError, match=r"scene: field 'depth' must be > 0"):
        scene.save(tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_failing_save_leaves_no_folder_and_keeps_the_old_one(tmp_path):
    old = make_scene(seed=1).save(tmp_path / "s")
    before = (old / SCENE_ARRAYS).read_bytes()
    scene = make_scene(seed=2)
    scene.meta["bad"] = object()  # fails while writing scene.json, after arrays.npz is written
    with pytest.raises(Exception, match="not JSON-serialisable"):
        scene.save(tmp_path / "s")
    with pytest.raises(Exception, match="not JSON-serialisable"):
        scene.save(tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temp folder, no "fresh"
    assert (old / SCENE_ARRAYS).read_bytes() == before
    assert Scene.load(old).meta["source"] == "test"


def test_save_replaces_an_existing_folder(tmp_path):
    make_scene(seed=1).save(tmp_path / "s")
    new = make_scene(seed=2)
    back = Scene.load(new.save(tmp_path / "s"))
    assert np.array_equal(back.depth, new.depth)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


# ---------------------------------------------------------------- known issues in pgdvs/scene.py


def test_non_json_meta_is_an_input_error(tmp_path):
    scene = make_scene()
    scene.meta["bad"] = object()
    with pytest.raises(InputError, match=r"meta"):
        scene.save(tmp_path / "s")


def test_scene_json_must_be_an_object(saved):
    (saved / SCENE_JSON).write_text("[1, 2]")
    with pytest.raises(SceneFormatError, match=SCENE_JSON):
        Scene.load(saved)
