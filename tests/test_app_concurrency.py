"""The served app through ``gradio_client``: four sessions at once each get their own result, and no file outside
the app's own folders can be read through it."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest
from gradio_client import Client, handle_file

from app_fixtures import moving_square_clip, running_app
from pgdvs.app.path_controls import preset_values, slider_pool
from pgdvs.trajectories import load_presets
from pgdvs.videoio import write_video

TINTS = [(1.0, 0.25, 0.25), (0.25, 1.0, 0.25), (0.25, 0.25, 1.0), (1.0, 1.0, 0.25)]
PRESET = "fixed-view"
FRAMES = 3


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("sessions")) as served:
        yield served


def render_args(n_frames: int, fps: float) -> list:
    """Slider values in the UI's order: the preset's own values with FRAMES frames, the unused ones at their low end."""
    values = {k: v[0] for k, v in preset_values(load_presets()[PRESET], n_frames, fps).items()}
    values["frames"] = FRAMES
    return [PRESET, *[values.get(s.label, s.lo) for s in slider_pool()]]


def mean_colour(path: str) -> np.ndarray:
    with av.open(path) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES
    return np.mean(frames, axis=(0, 1, 2))


def test_four_sessions_get_their_own_results(app, tmp_path, monkeypatch):
    url, store = app
    folders = set()  # recorded as used: a client that is done may be unloaded (its session closed) before the end
    get = store.get

    def recording_get(key):
        session = get(key)
        folders.add(session.folder)
        return session

    monkeypatch.setattr(store, "get", recording_get)
    clips = [write_video(tmp_path / f"clip{i}.mp4", moving_square_clip(8, (64, 96), tint), fps=8)
             for i, tint in enumerate(TINTS)]

    def one_user(i: int):
        client = Client(url, verbose=False)
        client.predict(handle_file(str(clips[i])), 8, 96, api_name="/ingest")
        client.predict(api_name="/reconstruct")
        video, info, downloads = client.predict(*render_args(8, 8.0), api_name="/render")
        return mean_colour(video), info, downloads

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one_user, range(4)))
    assert len(folders) == 4 and all(f.parent == store.root for f in folders)
    expected = np.array(TINTS) / np.linalg.norm(TINTS, axis=1, keepdims=True)
    for i, (colour, info, downloads) in enumerate(results):
        got = colour / np.linalg.norm(colour)
        assert int(np.argmax(expected @ got)) == i, f"session {i} got another session's colours: {colour}"
        assert f"{FRAMES} frames" in info
        assert [Path(d).name for d in downloads] == ["render.mp4", "scene_archive.zip", "render_depth.mp4",
                                                     "render_mask.mp4"]


def test_files_outside_the_app_cannot_be_read(app):
    url, store = app
    repo_file = Path(__file__).resolve().parents[1] / "app.py"
    for path in ("/etc/passwd", str(repo_file), str(store.root)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}gradio_api/file={path}")
        assert err.value.code == 403
    # a request naming a server path the client did not upload is refused (raw HTTP: gradio_client would
    # upload a local file itself)
    example = Path(__file__).resolve().parents[1] / "examples" / "synthetic-room.mp4"
    body = json.dumps({"data": [{"path": str(example), "meta": {"_type": "gradio.FileData"}}, 8, 96]}).encode()
    request = urllib.request.Request(f"{url}gradio_api/call/ingest", data=body,
                                     headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(request).read())["event_id"]
    stream = urllib.request.urlopen(f"{url}gradio_api/call/ingest/{event}").read().decode()
    assert "event: error" in stream and "kept" not in stream
    assert all(s.clip is None for s in store.sessions() if s.scene is None)


def test_segment_endpoint_before_reconstruction_explains(app):
    url, _ = app
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="Step 2 first"):
        client.predict(0, 5, 5, "include", api_name="/segment")
