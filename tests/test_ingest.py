from fractions import Fraction
from pathlib import Path
import zipfile

import av
import cv2
import numpy as np
import pytest

from pgdvs.errors import InputError
from pgdvs.ingest import load_clip
from pgdvs.videoio import write_video


def _frames(n, h=90, w=160):
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((h + 20, w + 4 * n, 3)).astype(np.float32), (0, 0), 2)
    base = (base - base.min()) / (base.max() - base.min())
    return np.stack([base[10:10 + h, 2 * k:2 * k + w] for k in range(n)])


def test_video_roundtrip_keeps_frames_and_fps(tmp_path):
    frames = _frames(12)
    path = write_video(tmp_path / "clip.mp4", frames, fps=24)
    clip = load_clip(path)
    assert clip.frames.shape == (12, 90, 160, 3) and clip.frames.dtype == np.float32
    assert clip.fps == pytest.approx(24)
    assert clip.notices == []
    assert np.abs(clip.frames - frames).mean() < 0.03  # H.264 at crf 18


def test_subsample_and_resize_are_reported(tmp_path):
    path = write_video(tmp_path / "long.mp4", _frames(30, 120, 200), fps=30)
    clip = load_clip(path, max_frames=10, max_side=100)
    assert clip.frames.shape == (10, 60, 100, 3)
    assert clip.fps == pytest.approx(10)
    assert any("every 3th" in n for n in clip.notices)
    assert any("resized from 200x120 to 100x60" in n for n in clip.notices)


def test_time_window_trims_long_clips(tmp_path):
    path = write_video(tmp_path / "v.mp4", _frames(40), fps=10)
    clip = load_clip(path, max_seconds=2.0, max_frames=100)
    assert len(clip.frames) == 20
    assert any("used 2 s" in n for n in clip.notices)


def test_frame_folder_and_zip(tmp_path):
    frames = _frames(4)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), cv2.cvtColor((f * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))
    clip = load_clip(folder)
    assert clip.frame_ids == ["f000", "f001", "f002", "f003"]
    assert np.abs(clip.frames - frames).max() <= 1 / 255 + 1e-6
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"../evil/{p.name}")  # zip-slip names must not escape
    zclip = load_clip(archive)
    assert zclip.frame_ids == clip.frame_ids
    np.testing.assert_array_equal(zclip.frames, clip.frames)
    assert not (tmp_path.parent / "evil").exists()


@pytest.mark.parametrize("name,content,message", [
    ("notes.txt", b"hello world, not a video", "not a video file"),
    ("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 500, "unreadable or corrupt video"),
    ("empty.mp4", b"", "file is empty"),
    ("bad.zip", b"PK not really", "not a valid zip archive"),
])
def test_bad_files_have_clear_messages(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_clip(path)


def test_missing_zero_and_one_frame(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_clip(tmp_path / "nope.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no frames found"):
        load_clip(empty)
    one = write_video(tmp_path / "one.mp4", _frames(1))
    with pytest.raises(InputError, match="only one frame"):
        load_clip(one)


def test_absurd_resolution_and_duration_are_refused(tmp_path):
    folder = tmp_path / "huge"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), np.zeros((4, 8200, 3), np.uint8))
    with pytest.raises(InputError, match="exceeds the 8192 px limit"):
        load_clip(folder)
    path = tmp_path / "slow.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(1, 2000))
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(InputError, match="minutes long"):
        load_clip(path)


def test_unknown_option_and_bad_budget(tmp_path):
    path = write_video(tmp_path / "v.mp4", _frames(3))
    with pytest.raises(TypeError, match="unknown ingest option"):
        load_clip(path, max_frame=3)
    with pytest.raises(InputError, match="max_frames must be >= 2"):
        load_clip(path, max_frames=1)
