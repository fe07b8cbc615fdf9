"""Preset schema: every key, its default and allowed values, as data; ``parse_preset`` checks a dict against it.

A preset is one YAML mapping::

    name: dolly-in                # id: lower-case letters, digits, '-' or '_'
    description: Moves toward the subject while the clip plays.
    frames: clip                  # output frames, or 'clip' = as many as the input
    fps: clip                     # output rate, or 'clip' = the input's rate
    time:   {mode: play, start: 0.0, end: 1.0}
    camera: {motion: dolly, direction: in, depth_fraction: 0.15, base: follow}

``time.mode`` and ``camera.motion`` / ``camera.base`` select which further keys are allowed (tables below;
``python -m pgdvs presets --schema`` prints them with defaults and ranges). Times are fractions of the clip
(0 = first frame, 1 = last), so a preset fits any clip length. Magnitudes are scene-relative: ``pixels`` of
parallax of the near content (the original's ``max_disp``), ``degrees``, or ``depth_fraction`` of the subject
depth. ``profile`` shapes one-way moves: ease (in-out), linear, or pingpong (there and back).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InputError

REQUIRED = object()
CLIP = "clip"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
MAX_DESCRIPTION = 160


@dataclass(frozen=True)
class Key:
    """One allowed key. kind: 'name' | 'line' | 'int' | 'float' | 'choice'; ``lo``/``hi`` inclusive;
    ``words`` are extra string values a number key accepts (e.g. 'clip')."""

    kind: str
    default: object = REQUIRED
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()
    words: tuple = ()


def _profile() -> Key:
    return Key("choice", "ease", choices=("ease", "linear", "pingpong"))


def _direction(*choices: str) -> Key:
    return Key("choice", choices[0], choices=choices)


TOP_KEYS = {
    "name": Key("name"),
    "description": Key("line"),
    "frames": Key("int", CLIP, 2, 2000, words=(CLIP,)),
    "fps": Key("float", CLIP, 1, 120, words=(CLIP,)),
}
SECTIONS = ("time", "camera")

# Section -> selector key -> (default value, {value: keys that value allows}).
TIME_MODES = {
    "play": {"start": Key("float", 0.0, 0, 1), "end": Key("float", 1.0, 0, 1)},
    "freeze": {"at": Key("float", 0.5, 0, 1)},
    "slow": {"center": Key("float", 0.5, 0, 1), "window": Key("float", 0.5, 0.01, 1)},
}
CAMERA_BASES = {
    "follow": {},
    "fixed": {},
    "smooth": {"smoothing": Key("float", 0.1, 0.005, 1)},
}
CAMERA_MOTIONS = {
    "none": {},
    "wobble": {"pixels": Key("float", 32.0, 0, 256), "laps": Key("int", 8, 1, 64)},
    "truck": {"direction": _direction("left", "right"), "pixels": Key("float", 32.0, 0, 256), "profile": _profile()},
    "crane": {"direction": _direction("up", "down"), "pixels": Key("float", 32.0, 0, 256), "profile": _profile()},
    "dolly": {"direction": _direction("in", "out"), "depth_fraction": Key("float", 0.15, 0, 0.6),
              "profile": _profile()},
    "dolly_zoom": {"direction": _direction("in", "out"), "depth_fraction": Key("float", 0.2, 0, 0.6),
                   "profile": _profile()},
    "zoom": {"factor": Key("float", 1.5, 0.5, 4), "profile": _profile()},
    "pan": {"direction": _direction("left", "right"), "degrees": Key("float", 6.0, 0, 45), "profile": _profile()},
    "tilt": {"direction": _direction("up", "down"), "degrees": Key("float", 4.0, 0, 30), "profile": _profile()},
    "arc": {"direction": _direction("left", "right"), "degrees": Key("float", 10.0, 0, 45), "profile": _profile()},
    "orbit": {"degrees": Key("float", 8.0, 0, 45), "laps": Key("int", 1, 1, 16)},
    "spiral": {"pixels": Key("float", 24.0, 0, 256), "laps": Key("int", 2, 1, 16)},
}
MEANING = {
    "play": "times run from start to end (fractions of the clip; end < start plays backwards)",
    "freeze": "time stands still at 'at'",
    "slow": "the window of total length 'window' centred on 'center', stretched over all output frames",
    "follow": "the camera rides on the input trajectory at the output time",
    "fixed": "the camera stays at the input pose of the middle of the time range",
    "smooth": "the input trajectory smoothed with a Gaussian of 'smoothing' x clip length",
    "none": "no extra move",
    "wobble": "the original PGDVS ellipse (x = a sin, y = a/2 cos), 'laps' times over the path",
    "truck": "slide sideways", "crane": "rise or sink", "dolly": "move along the view axis",
    "dolly_zoom": "dolly while the focal length keeps the subject's size",
    "zoom": "scale the focal length by 'factor' (no camera motion)",
    "pan": "turn left or right in place", "tilt": "turn up or down in place",
    "arc": "circle around the subject, facing it", "orbit": "swing right, left and back around the subject",
    "spiral": "circle a growing then shrinking loop, facing the subject",
}
SELECTORS = {
    "time": {"mode": ("play", TIME_MODES)},
    "camera": {"motion": ("none", CAMERA_MOTIONS), "base": ("follow", CAMERA_BASES)},
}


@dataclass(frozen=True)
class Preset:
    """A validated preset; ``time`` and ``camera`` hold every key of their section, defaults filled in.
    ``frames`` / ``fps`` are None for 'clip' (take them from the scene)."""

    name: str
    description: str
    frames: int | None
    fps: float | None
    time: dict = field(default_factory=dict)
    camera: dict = field(default_factory=dict)
    source: str = "<dict>"

    def to_dict(self) -> dict:
        """The preset as a YAML-able mapping; ``parse_preset(p.to_dict())`` gives ``p`` back."""
        return {"name": self.name, "description": self.description,
                "frames": CLIP if self.frames is None else self.frames,
                "fps": CLIP if self.fps is None else self.fps,
                "time": dict(self.time), "camera": dict(self.camera)}

    def with_overrides(self, **overrides) -> "Preset":
        """A copy with top-level keys replaced and ``time`` / ``camera`` dicts merged key by key, re-validated,
        e.g. ``p.with_overrides(frames=50, camera={"pixels": 48})``. Changing ``time.mode``, ``camera.motion``
        or ``camera.base`` drops the old variant's keys."""
        data = self.to_dict()
        for key, value in overrides.items():
            if key in SECTIONS and isinstance(value, dict):
                for sel, (_, variants) in SELECTORS[key].items():
                    old = data[key][sel]
                    if value.get(sel, old) != old:  # the old variant's keys (and defaults) no longer apply
                        data[key] = {k: v for k, v in data[key].items() if k not in variants[old]}
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return parse_preset(data, f"{self.source} (with overrides)")


def _fail(source: str, key: str, problem: str):
    raise InputError(f"{source}: key '{key}' {problem}")


def _describe(spec: Key) -> str:
    if spec.kind == "choice":
        return "one of " + ", ".join(spec.choices)
    if spec.kind in ("int", "float"):
        what = "an integer" if spec.kind == "int" else "a number"
        extra = "".join(f" or '{w}'" for w in spec.words)
        return f"{what} from {spec.lo:g} to {spec.hi:g}{extra}"
    if spec.kind == "name":
        return "a name of lower-case letters, digits, '-' or '_' (at most 48, starting with a letter or digit)"
    return f"one line of text (at most {MAX_DESCRIPTION} characters)"


def _check_value(source: str, key: str, value, spec: Key):
    """Return ``value`` converted to its kind, or raise naming the key and what is allowed."""
    allowed = _describe(spec)
    if spec.words and value in spec.words:
        return value
    if spec.kind in ("int", "float"):
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or (spec.kind == "int" and not isinstance(value, int)):
            _fail(source, key, f"is {value!r}, expected {allowed}")
        if not spec.lo <= value <= spec.hi:  # also catches NaN
            _fail(source, key, f"is {value!r}, out of range: expected {allowed}")
        return int(value) if spec.kind == "int" else float(value)
    if not isinstance(value, str):
        _fail(source, key, f"is {value!r}, expected {allowed}")
    if spec.kind == "choice" and value not in spec.choices:
        _fail(source, key, f"is {value!r}, expected {allowed}")
    if spec.kind == "name" and not NAME_PATTERN.fullmatch(value):
        _fail(source, key, f"is {value!r}, expected {allowed}")
    if spec.kind == "line" and (not value.strip() or "\n" in value.strip() or len(value) > MAX_DESCRIPTION):
        _fail(source, key, f"is {value!r}, expected {allowed}")
    return value.strip() if spec.kind == "line" else value


def _check_keys(source: str, data: dict, allowed: dict[str, Key], prefix: str) -> dict:
    out = {}
    for key, spec in allowed.items():
        if key in data:
            out[key] = _check_value(source, prefix + key, data[key], spec)
        elif spec.default is REQUIRED:
            _fail(source, prefix + key, f"is required: {_describe(spec)}")
        else:
            out[key] = spec.default
    return out


def _parse_section(source: str, section: str, data) -> dict:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        _fail(source, section, f"must be a mapping of keys, got {type(data).__name__} {data!r}")
    prefix = f"{section}."
    out, allowed = {}, {}
    for sel, (default, variants) in SELECTORS[section].items():
        choice = _check_value(source, prefix + sel, data.get(sel, default), Key("choice", choices=tuple(variants)))
        out[sel] = choice
        allowed.update(_check_keys(source, data, variants[choice], prefix))
    for key in data:
        if key in out or key in allowed:
            continue
        for sel, (_, variants) in SELECTORS[section].items():
            owners = [v for v, keys in variants.items() if key in keys]
            if owners:
                takes = ", ".join(variants[out[sel]]) or "no further keys"
                _fail(source, prefix + str(key), f"does not apply to {sel} '{out[sel]}' ({sel} '{out[sel]}' takes: "
                      f"{takes}; '{key}' belongs to {sel} {', '.join(owners)})")
        known = {k for _, variants in SELECTORS[section].values() for keys in variants.values() for k in keys}
        _fail(source, prefix + str(key), f"is unknown (allowed in '{section}': {', '.join(sorted(known | set(out)))})")
    out.update(allowed)
    return out


def parse_preset(data, source: str = "<dict>") -> Preset:
    """Validate a preset mapping (as read from YAML). Raises InputError naming ``source``, the key and what
    is allowed: missing required keys, unknown keys, wrong types, values out of range, keys of another mode."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: a preset must be a mapping of keys (name, description, ...), "
                         f"got {type(data).__name__}")
    for key in data:
        if key not in TOP_KEYS and key not in SECTIONS:
            _fail(source, str(key), f"is unknown (allowed: {', '.join([*TOP_KEYS, *SECTIONS])})")
    top = _check_keys(source, data, TOP_KEYS, "")
    return Preset(
        name=top["name"], description=top["description"],
        frames=None if top["frames"] == CLIP else top["frames"],
        fps=None if top["fps"] == CLIP else top["fps"],
        time=_parse_section(source, "time", data.get("time")),
        camera=_parse_section(source, "camera", data.get("camera")),
        source=source,
    )


def describe_schema() -> str:
    """Every key with its allowed values and default, generated from the tables above (for the CLI)."""
    def line(key, spec):
        default = "" if spec.default is REQUIRED else f" [default: {spec.default}]"
        return f"  {key}: {_describe(spec)}{default}"

    out = ["top level:", *(line(k, v) for k, v in TOP_KEYS.items())]
    for section, selectors in SELECTORS.items():
        for sel, (default, variants) in selectors.items():
            out.append(f"{section}.{sel}: one of {', '.join(variants)} [default: {default}]")
            for value, keys in variants.items():
                out.append(f"  {value}: {MEANING[value]}")
                out.extend("  " + line(f"{section}.{k}", spec) for k, spec in keys.items())
    return "\n".join(out)
