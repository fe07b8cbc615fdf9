"""Preset files: shipped set, schema defaults, one message per kind of invalid file, the `presets` command."""
import dataclasses

import pytest

from pgdvs.cli import main
from pgdvs.errors import InputError
from pgdvs.trajectories import PRESETS_DIR, load_preset, load_presets, parse_preset, scan_presets

REQUIRED_PRESETS = (
    "spatio-temporal", "bullet-time", "fixed-view", "stabilised", "dolly-in", "dolly-out", "dolly-zoom-in",
    "dolly-zoom-out", "pan-left", "pan-right", "tilt-up", "tilt-down", "arc-left", "arc-right", "crane-up",
    "crane-down", "spiral", "orbit",
)
GOOD = "name: mine\ndescription: My own move.\ntime: {mode: freeze, at: 0.2}\ncamera: {motion: pan}\n"


def test_shipped_presets_load_and_cover_the_vocabulary():
    presets = load_presets()
    assert set(REQUIRED_PRESETS) <= set(presets) and len(presets) == len(list(PRESETS_DIR.glob("*.yaml")))
    original = presets["spatio-temporal"]
    assert original.time == {"mode": "slow", "center": 0.5, "window": 0.5}
    assert original.camera == {"motion": "wobble", "base": "follow", "pixels": 32.0, "laps": 8}
    assert presets["bullet-time"].time["mode"] == "freeze" and presets["fixed-view"].camera["base"] == "fixed"
    for preset in presets.values():
        assert "\n" not in preset.description and len(preset.description) > 20
        assert dataclasses.replace(parse_preset(preset.to_dict()), source=preset.source) == preset


def test_defaults_fill_every_key():
    preset = parse_preset({"name": "x", "description": "Only the required keys."})
    assert preset.frames is None and preset.fps is None  # 'clip'
    assert preset.time == {"mode": "play", "start": 0.0, "end": 1.0}
    assert preset.camera == {"motion": "none", "base": "follow"}
    dolly = parse_preset({"name": "x", "description": "d", "camera": {"motion": "dolly"}})
    assert dolly.camera == {"motion": "dolly", "base": "follow", "direction": "in", "depth_fraction": 0.15,
                            "profile": "ease"}


def test_a_dropped_in_file_becomes_a_preset(tmp_path):
    (tmp_path / "mine.yaml").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("not a preset")
    (tmp_path / ".mine.tmp-1.yaml").write_text("broken: [")  # half-written temp files are skipped
    presets = load_presets(tmp_path)
    assert list(presets) == ["mine"] and presets["mine"].time == {"mode": "freeze", "at": 0.2}
    assert presets["mine"].camera["degrees"] == 6.0 and presets["mine"].source == str(tmp_path / "mine.yaml")


# One case per kind of invalid file: (file text, pieces the message must contain after "<file>:").
INVALID = {
    "yaml syntax": ("name: x\ndescription: d\ncamera: {motion: pan\n", [":4: YAML error"]),
    "duplicate key": ("name: x\ndescription: d\nname: y\n", [":3: YAML error: key 'name' appears twice"]),
    "empty file": ("# nothing here\n", [": empty file", "'name' and 'description'"]),
    "not a mapping": ("- name: x\n", [": a preset must be a mapping of keys", "got list"]),
    "missing key": ("name: x\n", [": key 'description' is required", "one line of text"]),
    "unknown key": (GOOD + "colour: red\n", [": key 'colour' is unknown", "allowed: name, description, frames"]),
    "unknown nested key": ("name: x\ndescription: d\ncamera: {speed: 3}\n",
                           [": key 'camera.speed' is unknown", "allowed in 'camera':", "degrees"]),
    "key of another motion": ("name: x\ndescription: d\ncamera: {motion: dolly, degrees: 5}\n",
                              [": key 'camera.degrees' does not apply to motion 'dolly'",
                               "motion 'dolly' takes: direction, depth_fraction, profile",
                               "belongs to motion pan, tilt, arc, orbit"]),
    "key of another time mode": ("name: x\ndescription: d\ntime: {mode: play, at: 0.5}\n",
                                 [": key 'time.at' does not apply to mode 'play'", "takes: start, end"]),
    "key of another base": ("name: x\ndescription: d\ncamera: {smoothing: 0.2}\n",
                            [": key 'camera.smoothing' does not apply to base 'follow'", "no further keys",
                             "belongs to base smooth"]),
    "wrong type": (GOOD + "frames: many\n", [": key 'frames' is 'many'", "an integer from 2 to 2000 or 'clip'"]),
    "boolean for a number": (GOOD + "fps: yes\n", [": key 'fps' is True", "a number from 1 to 120 or 'clip'"]),
    "float for an integer": (GOOD + "frames: 2.5\n", [": key 'frames' is 2.5", "expected an integer"]),
    "out of range": ("name: x\ndescription: d\ncamera: {motion: wobble, pixels: 500}\n",
                     [": key 'camera.pixels' is 500", "out of range", "from 0 to 256"]),
    "bad choice": ("name: x\ndescription: d\ntime: {mode: fast}\n",
                   [": key 'time.mode' is 'fast'", "one of play, freeze, slow"]),
    "bad direction": ("name: x\ndescription: d\ncamera: {motion: pan, direction: up}\n",
                      [": key 'camera.direction' is 'up'", "one of left, right"]),
    "bad name": ("name: My Move\ndescription: d\n", [": key 'name' is 'My Move'", "lower-case letters"]),
    "multi-line description": ("name: x\ndescription: |\n  one\n  two\n", [": key 'description'", "one line"]),
    "section not a mapping": ("name: x\ndescription: d\ntime: freeze\n",
                              [": key 'time' must be a mapping of keys", "got str"]),
}


@pytest.mark.parametrize("kind", sorted(INVALID))
def test_each_kind_of_invalid_file_has_its_own_message(tmp_path, kind):
    text, pieces = INVALID[kind]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_preset(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for piece in pieces:
        assert piece in message, message


def test_invalid_messages_are_distinct():
    first_lines = {kind: pieces[0] for kind, (_, pieces) in INVALID.items()}
    assert len(set(first_lines.values())) == len(INVALID)


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(InputError, match=r"latin.yaml: not UTF-8 text"):
        load_preset(path)


def test_duplicate_names_and_invalid_files_are_reported_per_file(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    (tmp_path / "c.yaml").write_text("name: c\n")
    presets, errors = scan_presets(tmp_path)
    assert list(presets) == ["mine"] and len(errors) == 2
    assert str(errors[0]).startswith(str(tmp_path / "b.yaml")) and "already used by" in str(errors[0])
    assert str(errors[1]).startswith(str(tmp_path / "c.yaml"))
    with pytest.raises(InputError, match=r"c\.yaml: key 'description' is required"):
        load_presets(tmp_path)
    with pytest.raises(InputError, match="presets folder does not exist"):
        load_presets(tmp_path / "nowhere")


def test_presets_command_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in out]
    assert names == sorted(load_presets()) and all(len(line.split(None, 1)[1]) > 20 for line in out)


def test_presets_command_fails_naming_the_invalid_file(tmp_path, capsys):
    (tmp_path / "mine.yaml").write_text(GOOD)
    (tmp_path / "broken.yaml").write_text(GOOD.replace("pan", "teleport"))
    assert main(["presets", "--folder", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("mine ")  # the valid ones are still listed
    assert str(tmp_path / "broken.yaml") in captured.err and "key 'camera.motion' is 'teleport'" in captured.err


def test_schema_help_covers_every_key(capsys):
    assert main(["presets", "--schema"]) == 0
    out = capsys.readouterr().out
    for word in ("time.mode: one of play, freeze, slow", "dolly_zoom: dolly while the focal length",
                 "camera.smoothing: a number from 0.005 to 1 [default: 0.1]", "fps: a number from 1 to 120 or 'clip'"):
        assert word in out
