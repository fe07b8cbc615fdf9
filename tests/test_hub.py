"""pgdvs.hub: manifest, offline Hub cache resolution, verification, fallbacks, load-once, real tiny models."""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hub_fixtures import (PINNED_REVISION, TINY_REVISION, build_tiny_checkpoints, sha256_of, tiny_manifest,
                          tiny_manifest_data, write_hub_repo, write_tiny_cache)

from pgdvs.errors import InputError
from pgdvs.hub import store
from pgdvs.hub.manifest import apply_env_overrides, load_manifest, parse_manifest, preload_from_hub_entries
from pgdvs.hub.registry import ModelHub

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sources(tmp_path_factory):
    return build_tiny_checkpoints(tmp_path_factory.mktemp("tiny-checkpoints"))


@pytest.fixture
def cache(tmp_path, sources):
    return write_tiny_cache(tmp_path / "hub", sources)


def started(manifest, cache, **kwargs) -> ModelHub:
    kwargs.setdefault("environ", {})
    return ModelHub(manifest, cache_dir=cache, **kwargs).start(background=False)


def snapshot_file(cache: Path, repo: str, rel: str, revision: str = TINY_REVISION) -> Path:
    return cache / f"models--{repo.replace('/', '--')}" / "snapshots" / revision / rel


# --- the project manifest ------------------------------------------------------------------------------------

def test_project_manifest_lists_every_model_with_honest_pins():
    m = load_manifest()
    assert list(m.models) == ["sam_vit_h", "sam_vit_b", "depth_anything_v2_small", "raft_large", "gnt"]
    sam = m.models["sam_vit_b"]
    assert (sam.repo_id, sam.files[0].path, sam.loader_args["model_type"]) == (
        "ybelkada/segment-anything", "checkpoints/sam_vit_b_01ec64.pth", "vit_b")
    assert not m.models["sam_vit_h"].enabled and m.models["sam_vit_b"].enabled
    assert [f.path for f in m.models["depth_anything_v2_small"].files] == [
        "config.json", "model.safetensors", "preprocessor_config.json"]
    assert m.models["gnt"].repo_id is None and m.models["gnt"].license == "MIT"
    for spec in m.models.values():
        assert spec.revision == "main" or re.fullmatch(r"[0-9a-f]{40}", spec.revision)
        assert spec.stage in m.classical


def test_raft_entry_matches_torchvision_weights():
    from torchvision.models.optical_flow import Raft_Large_Weights

    raft = load_manifest().models["raft_large"]
    url = Raft_Large_Weights.DEFAULT.url
    assert raft.url == url and raft.files[0].path == url.rsplit("/", 1)[1]
    # torchvision names its files NAME-<sha256 prefix>.pth; the manifest checks that prefix.
    assert url.endswith(f"-{raft.files[0].sha256}.pth")


def test_preload_from_hub_entries_come_from_the_manifest():
    assert preload_from_hub_entries() == [
        "ybelkada/segment-anything checkpoints/sam_vit_b_01ec64.pth",
        "depth-anything/Depth-Anything-V2-Small-hf config.json,model.safetensors,preprocessor_config.json",
    ]


def test_readme_front_matter_preloads_the_manifest_models():
    readme = REPO_ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md not written yet")
    match = re.match(r"---\n(.*?)\n---\n", readme.read_text(), re.S)
    assert match, "README.md must open with the Space's YAML front matter"
    try:
        header = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        pytest.fail(f"README.md front matter is not valid YAML: {exc}")
    assert header.get("preload_from_hub") == preload_from_hub_entries()


@pytest.mark.parametrize("change, message", [
    ({"stage": "nope"}, "stage 'nope' is not one of the stages"),
    ({"loader": "magic"}, "loader 'magic' is not one of"),
    ({"repo_id": "no-slash"}, "repo_id 'no-slash' is not of the form ORG/NAME"),
    ({"files": [{"path": "a.pth", "sha256": "XYZ"}]}, "files[0].sha256 must be null or 8 to 64"),
    ({"files": [{"path": "a.pth", "size": -3}]}, "files[0].size must be null or a positive number"),
    ({"colour": "red"}, "unknown field(s) ['colour']"),
    ({"license": None}, ".license is required"),
])
def test_manifest_errors_name_the_field(change, message):
    entry = {"name": "m", "stage": "flow", "files": [{"path": "a.pth"}], "license": "MIT", "loader": "raft"}
    with pytest.raises(InputError) as info:
        parse_manifest({"stages": {"flow": {"classical": "DIS"}}, "models": [{**entry, **change}]}, source="x.yaml")
    assert message in str(info.value) and "x.yaml: models[0]" in str(info.value)


def test_env_overrides(tmp_path):
    spec = load_manifest().models["sam_vit_b"]
    env = {"PGDVS_SAM_VIT_B_REPO": "me/sam-mirror", "PGDVS_SAM_VIT_B_REVISION": "v1",
           "PGDVS_SAM_VIT_B_PATH": str(tmp_path / "sam.pth"), "PGDVS_SAM_VIT_B_SHA256": "ABCDEF0123",
           "PGDVS_SAM_VIT_B_ENABLED": "0"}
    out = apply_env_overrides(spec, env)
    assert (out.repo_id, out.revision, out.local_path, out.files[0].sha256, out.enabled) == (
        "me/sam-mirror", "v1", tmp_path / "sam.pth", "abcdef0123", False)
    assert apply_env_overrides(spec, {"PGDVS_SAM_VIT_B_SHA256": "none"}).files[0].sha256 is None
    assert apply_env_overrides(spec, {}) is spec
    with pytest.raises(InputError, match="PGDVS_SAM_VIT_B_REPO='bad' is not a Hub repo id"):
        apply_env_overrides(spec, {"PGDVS_SAM_VIT_B_REPO": "bad"})


def test_bad_env_override_is_a_status_not_a_crash(sources, cache):
    hub = started(tiny_manifest(sources), cache, environ={"PGDVS_SAM_REPO": "not a repo"})
    assert hub.status()["sam"].state == "unavailable"
    assert "PGDVS_SAM_REPO='not a repo'" in hub.status()["sam"].reason
    assert hub.status()["raft"].state == "ready"


def test_default_manifest_offline_reports_every_model_and_stays_classical(tmp_path):
    hub = started(None, tmp_path / "empty-cache", torch_dir=tmp_path / "torch")
    st = hub.status()
    assert st["sam_vit_h"].reason == "disabled (set PGDVS_SAM_VIT_H_ENABLED=1 to use it)"
    assert st["sam_vit_b"].reason.startswith("not downloaded: ybelkada/segment-anything is not in the Hub cache")
    assert st["sam_vit_b"].reason.endswith("offline (HF_HUB_OFFLINE=1)")
    assert "PGDVS_RAFT_LARGE_REPO" in st["raft_large"].reason
    assert "no Hub repo configured" in st["gnt"].reason and "PGDVS_GNT_REPO" in st["gnt"].reason
    assert {s.state for s in st.values()} == {"unavailable"}
    assert hub.backends() == {"segmentation": "classical: GrabCut from clicks + motion mask",
                              "depth": "classical: multi-view triangulation", "flow": "classical: OpenCV DIS",
                              "static_render": "classical: masked image-based rendering"}
    assert hub.get("sam_vit_b") is None and hub.get_stage("segmentation") is None


# --- resolution from the offline Hub cache --------------------------------------------------------------------

def test_resolves_every_model_from_the_offline_cache(sources, cache):
    hub = started(tiny_manifest(sources), cache)
    st = hub.status()
    assert st["sam"].path == str(snapshot_file(cache, "test-org/tiny-sam", "checkpoints/sam_tiny.pth"))
    # depth pins a commit: resolved through snapshots/<commit>, not refs/main
    assert st["depth"].path == str(snapshot_file(cache, "test-org/tiny-depth", "", PINNED_REVISION))
    assert [st[n].state for n in ("sam", "depth", "raft")] == ["ready"] * 3
    assert all(st[n].reason == "Hub cache" and st[n].verified for n in ("sam", "depth", "raft"))
    assert st["gnt"].state == "unavailable" and st["gnt"].verified
    assert st["gnt"].reason == "GNT renderer not available yet; checkpoint verified (Hub cache)"
    assert hub.backends() == {"segmentation": "learned: tiny sam", "depth": "learned: tiny depth",
                              "flow": "learned: tiny raft", "static_render": "classical: masked IBR"}


def test_hf_hub_cache_setting_is_honoured_when_no_cache_dir_is_given(sources, cache, monkeypatch):
    from huggingface_hub import constants

    assert started(tiny_manifest(sources), None).status()["sam"].state == "unavailable"  # conftest's empty cache
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # what HF_HUB_CACHE / HF_HOME set at import
    st = started(tiny_manifest(sources), None).status()["sam"]
    assert (st.state, st.path) == ("ready", str(snapshot_file(cache, "test-org/tiny-sam", "checkpoints/sam_tiny.pth")))


def _truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, expected", [
    (Path.unlink, "missing file: checkpoints/sam_tiny.pth is not in the cached snapshot 01234567 of "
                  "test-org/tiny-sam; offline (HF_HUB_OFFLINE=1)"),
    (_truncate, "truncated file: checkpoints/sam_tiny.pth has {half} of {size} bytes"),
    (_flip_byte, "checksum mismatch: checkpoints/sam_tiny.pth has sha256 "),
])
def test_damaged_file_gets_its_own_message_and_the_classical_fallback(sources, cache, damage, expected):
    path = snapshot_file(cache, "test-org/tiny-sam", "checkpoints/sam_tiny.pth")
    size = path.stat().st_size
    damage(path)
    hub = started(tiny_manifest(sources), cache)
    st = hub.status()["sam"]
    assert st.state == "unavailable" and not st.verified
    assert st.reason.startswith(expected.format(half=size // 2, size=size))
    if damage is _flip_byte:
        assert st.reason.endswith(f"expected {sha256_of(sources['sam']['checkpoints/sam_tiny.pth'])[:16]}…")
    assert hub.backend_for("segmentation") == "classical: GrabCut"
    assert hub.get("sam") is None and hub.get_stage("segmentation") is None
    assert hub.status()["raft"].state == "ready"  # one bad model does not affect the others


def test_partial_availability(sources, tmp_path):
    cache = write_tiny_cache(tmp_path / "hub", sources, names=["sam", "raft"])
    hub = started(tiny_manifest(sources), cache)
    st = hub.status()
    assert (st["sam"].state, st["raft"].state, st["depth"].state) == ("ready", "ready", "unavailable")
    assert st["depth"].reason.startswith("not downloaded: test-org/tiny-depth is not in the Hub cache")
    assert st["gnt"].reason.startswith("not downloaded: test-org/tiny-gnt")
    assert hub.backends() == {"segmentation": "learned: tiny sam", "depth": "classical: triangulation",
                              "flow": "learned: tiny raft", "static_render": "classical: masked IBR"}
    assert hub.get("depth") is None and hub.get("raft") is not None


def test_missing_revision_has_its_own_message(sources, tmp_path):
    cache = write_tiny_cache(tmp_path / "hub", sources)
    hub = started(tiny_manifest(sources), cache, environ={"PGDVS_SAM_REVISION": "b" * 40})
    assert hub.status()["sam"].reason.startswith(f"not downloaded: revision '{'b' * 40}' of test-org/tiny-sam")


def test_hub_blob_name_is_the_checksum_when_the_manifest_has_none(sources, tmp_path):
    cache = write_tiny_cache(tmp_path / "hub", sources, blobs=True)
    assert started(tiny_manifest(sources, checksums=False), cache).status()["sam"].state == "ready"
    blob = snapshot_file(cache, "test-org/tiny-sam", "checkpoints/sam_tiny.pth").resolve()
    assert blob.parent.name == "blobs"
    _flip_byte(blob)
    st = started(tiny_manifest(sources, checksums=False), cache).status()["sam"]
    assert st.state == "unavailable" and st.reason.endswith(f"expected {blob.name[:16]}…")


def test_unverifiable_corrupt_file_fails_at_load_and_falls_back(sources, cache):
    _truncate(snapshot_file(cache, "test-org/tiny-sam", "checkpoints/sam_tiny.pth"))
    hub = started(tiny_manifest(sources, checksums=False), cache)
    assert hub.status()["sam"].state == "ready"  # no size or sha256 known: nothing to check before loading
    assert hub.get("sam") is None
    st = hub.status()["sam"]
    assert st.state == "unavailable" and st.reason.startswith("unreadable file: loading tiny sam failed")
    assert hub.backend_for("segmentation") == "classical: GrabCut"


def test_local_path_override_and_direct_url_source(sources, tmp_path):
    raft_file = sources["raft"]["raft_tiny.pth"]
    url_model = {"name": "flow_url", "stage": "flow", "url": "https://example.invalid/raft_tiny.pth",
                 "files": [{"path": "raft_tiny.pth", "sha256": sha256_of(raft_file)[:8]}], "license": "BSD-3-Clause",
                 "loader": "raft", "loader_args": {"arch": "raft_small"}}
    manifest = tiny_manifest(sources, extra=[url_model])
    env = {"PGDVS_SAM_PATH": str(sources["sam"]["checkpoints/sam_tiny.pth"]),
           "PGDVS_DEPTH_PATH": str(sources["depth"]["config.json"].parent)}
    torch_dir = tmp_path / "torch"
    hub = started(manifest, tmp_path / "empty", environ=env, torch_dir=torch_dir)
    st = hub.status()
    assert (st["sam"].state, st["sam"].reason) == ("ready", "local path (PGDVS_SAM_PATH)")
    assert (st["depth"].state, st["depth"].reason) == ("ready", "local path (PGDVS_DEPTH_PATH)")
    assert st["flow_url"].reason.startswith("not downloaded: raft_tiny.pth is not in " + str(torch_dir))
    torch_dir.mkdir()
    (torch_dir / "raft_tiny.pth").write_bytes(raft_file.read_bytes())
    st = started(manifest, tmp_path / "empty", torch_dir=torch_dir).status()["flow_url"]
    assert (st.state, st.reason) == ("ready", "torch hub cache")


# --- startup behaviour ---------------------------------------------------------------------------------------

def test_background_download_reports_downloading_then_switches_to_learned(sources, tmp_path, monkeypatch):
    """A simulated Hub (no network): the app stays classical while a download runs, then switches."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache, entered, release, calls = tmp_path / "hub", threading.Event(), threading.Event(), []
    files = {**sources["sam"]}

    def fake_download(repo_id, filename, *, local_files_only=False, **kwargs):
        calls.append((repo_id, filename, local_files_only))
        if local_files_only or repo_id != "test-org/tiny-sam":
            raise LocalEntryNotFoundError("not cached")
        entered.set()
        assert release.wait(30)
        return str(write_hub_repo(cache, repo_id, files) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(store, "reachable", lambda url: True)  # the simulated Hub answers
    hub = ModelHub(tiny_manifest(sources), cache_dir=cache, offline=False, environ={})
    assert {s.state for s in hub.status().values()} == {"queued"}
    assert hub.backend_for("segmentation") == "classical: GrabCut" and hub.get("sam") is None
    hub.start()
    assert entered.wait(30)
    st = hub.status()["sam"]
    assert (st.state, st.reason) == ("downloading", "downloading checkpoints/sam_tiny.pth from test-org/tiny-sam@main")
    assert hub.backend_for("segmentation") == "classical: GrabCut" and hub.get("sam") is None
    release.set()
    assert hub.wait(60)
    st = hub.status()
    assert (st["sam"].state, st["sam"].reason) == ("ready", "downloaded from the Hub")
    assert st["depth"].reason == "the Hub is unreachable and config.json of test-org/tiny-depth@" \
                                 f"{PINNED_REVISION} is not cached"
    assert hub.backend_for("segmentation") == "learned: tiny sam"
    assert ("test-org/tiny-sam", "checkpoints/sam_tiny.pth", True) in calls  # cache looked at first


def test_an_unreachable_hub_is_reported_at_once_without_download_attempts(sources, tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls, probed = [], []

    def no_cache(repo_id, filename, *, local_files_only=False, **kwargs):
        calls.append(local_files_only)
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_cache)
    monkeypatch.setattr(store, "reachable", lambda url: probed.append(url) or False)
    hub = ModelHub(tiny_manifest(sources), cache_dir=tmp_path / "hub", offline=False, environ={}).start()
    assert hub.wait(30)
    st = hub.status()
    assert st["sam"].state == "unavailable"
    assert st["sam"].reason == ("the Hub is unreachable and checkpoints/sam_tiny.pth of test-org/tiny-sam@main "
                                "is not cached")
    assert calls and all(calls)  # only the cache was looked at: no request that huggingface_hub would retry
    assert probed


def test_reachable_probes_a_connection():
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert store.reachable(f"http://127.0.0.1:{port}/any/path")
    server.close()
    assert not store.reachable(f"http://127.0.0.1:{port}/any/path", timeout=1.0)  # refused
    assert not store.reachable("https://host.invalid/model.pth", timeout=1.0)  # no such name


def test_concurrent_get_loads_each_model_once(sources, cache):
    from pgdvs.hub.loaders import load_sam

    calls, barrier = [], threading.Barrier(8)

    def counting_load_sam(paths, args, device):
        calls.append(threading.get_ident())
        threading.Event().wait(0.2)  # hold the load so that the other threads arrive meanwhile
        return load_sam(paths, args, device)

    hub = started(tiny_manifest(sources), cache, loaders={"sam": counting_load_sam})
    results = []

    def ask():
        barrier.wait()
        results.append(hub.get("sam"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(calls) == 1 and len(results) == 8
    assert all(r is results[0] and r is not None for r in results)
    assert hub.get("sam") is results[0] and len(calls) == 1


def test_preload_loads_ready_models_in_the_background_thread(sources, tmp_path):
    from pgdvs.hub.loaders import load_raft

    calls = []

    def counting_load_raft(paths, args, device):
        calls.append(threading.current_thread().name)
        return load_raft(paths, args, device)

    cache = write_tiny_cache(tmp_path / "hub", sources, names=["raft"])
    hub = ModelHub(tiny_manifest(sources), cache_dir=cache, environ={}, loaders={"raft": counting_load_raft})
    assert hub.start(preload=True).wait(60)
    assert calls == ["pgdvs-hub"]  # loaded once, by the hub's thread, before anyone asked
    assert hub.get("raft") is not None and calls == ["pgdvs-hub"]


def test_start_is_idempotent_and_default_hub_is_process_wide(sources, cache):
    hub = ModelHub(tiny_manifest(sources), cache_dir=cache, environ={})
    assert hub.start() is hub.start()
    assert hub.wait(60) and hub.status()["sam"].state == "ready"
    assert ModelHub.default() is ModelHub.default()
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        hub.get("nope")


# --- the loaded models really run ----------------------------------------------------------------------------

def test_loaded_models_run(sources, cache):
    from segment_anything import SamPredictor

    hub = started(tiny_manifest(sources), cache)
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)

    name, sam = hub.get_stage("segmentation")
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(point_coords=np.array([[20, 30]]), point_labels=np.array([1]))
    assert name == "sam" and masks.shape == (3, 48, 64) and masks.dtype == bool and scores.shape == (3,)

    disparity = hub.get("depth").predict_disparity(image)
    assert disparity.shape == (48, 64) and disparity.dtype == np.float32
    assert np.isfinite(disparity).all() and disparity.std() > 0

    frames = torch.rand(2, 1, 3, 128, 128)
    with torch.inference_mode():
        flows = hub.get("raft")(frames[0], frames[1], num_flow_updates=2)
    assert len(flows) == 2 and flows[-1].shape == (1, 2, 128, 128) and torch.isfinite(flows[-1]).all()


# --- CLI -----------------------------------------------------------------------------------------------------

def test_cli_status_and_verify(sources, cache, tmp_path, capsys):
    from pgdvs.cli import main

    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(yaml.safe_dump(tiny_manifest_data(sources)))
    common = ["--manifest", str(manifest), "--cache-dir", str(cache), "--json"]
    assert main(["hub", "verify", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"]["sam"]["state"] == "ready" and report["backends"]["flow"] == "learned: tiny raft"

    _flip_byte(snapshot_file(cache, "test-org/tiny-raft", "raft_tiny.pth"))
    assert main(["hub", "status", *common]) == 0  # sizes only: the flipped byte is not seen
    assert json.loads(capsys.readouterr().out)["models"]["raft"]["state"] == "ready"
    assert main(["hub", "verify", "raft", *common]) == 1
    report = json.loads(capsys.readouterr().out)
    assert list(report["models"]) == ["raft"]
    assert report["models"]["raft"]["reason"].startswith("checksum mismatch: raft_tiny.pth")

    assert main(["hub", "verify", "nope", *common]) == 2
    assert "unknown model(s) ['nope']" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["status", "download", "verify"])
def test_cli_help(action, capsys):
    from pgdvs.cli import build_parser

    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["hub", action, "--help"])
    assert info.value.code == 0 and "--cache-dir" in capsys.readouterr().out
