"""Camera-path parameters as a fixed pool of sliders built from the preset schema.

Gradio needs its components up front, so there is one slider per numeric preset key (``frames``, ``fps``,
``time.*``, ``camera.*``); choosing a preset shows the sliders its keys use, with that key's range and value.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..trajectories.schema import CAMERA_BASES, CAMERA_MOTIONS, TIME_MODES, Preset

MAX_UI_FRAMES = 240  # the schema allows 2000; longer renders belong in the CLI


@dataclass(frozen=True)
class SliderSpec:
    """One slider: ``section`` is '' for top-level keys, else 'time' / 'camera'."""

    section: str
    key: str
    lo: float
    hi: float
    step: float
    integer: bool = False

    @property
    def label(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key


def _numeric_keys(section: str, variants: dict) -> dict[str, SliderSpec]:
    out = {}
    for keys in variants.values():
        for key, spec in keys.items():
            if spec.kind not in ("int", "float"):
                continue
            step = 1.0 if spec.kind == "int" else (0.5 if spec.hi > 10 else 0.01)
            old = out.get(key)
            lo = spec.lo if old is None else min(old.lo, spec.lo)
            hi = spec.hi if old is None else max(old.hi, spec.hi)
            out[key] = SliderSpec(section, key, lo, hi, step, spec.kind == "int")
    return out


def slider_pool() -> list[SliderSpec]:
    """Every slider the UI creates, in display order."""
    pool = [SliderSpec("", "frames", 2, MAX_UI_FRAMES, 1, True), SliderSpec("", "fps", 1, 60, 1)]
    pool += _numeric_keys("time", TIME_MODES).values()
    pool += _numeric_keys("camera", {**CAMERA_MOTIONS, **CAMERA_BASES}).values()
    return pool


def preset_values(preset: Preset, n_frames: int, clip_fps: float) -> dict[str, tuple[float, float, float]]:
    """The keys a preset uses as {``SliderSpec.label``: (value, lo, hi)}; 'clip' sizes resolved against the scene
    and ranges taken from the preset's own time mode / camera motion (e.g. tilt allows fewer degrees than pan)."""
    frames = preset.frames if preset.frames is not None else n_frames
    fps = preset.fps if preset.fps is not None else clip_fps
    values = {"frames": (min(frames, MAX_UI_FRAMES), 2, MAX_UI_FRAMES), "fps": (round(fps), 1, 60)}
    schemas = {"time": TIME_MODES[preset.time["mode"]],
               "camera": {**CAMERA_MOTIONS[preset.camera["motion"]], **CAMERA_BASES[preset.camera["base"]]}}
    for section, keys in schemas.items():
        for key, spec in keys.items():
            if spec.kind in ("int", "float"):
                values[f"{section}.{key}"] = (getattr(preset, section)[key], spec.lo, spec.hi)
    return values


def apply_values(preset: Preset, values: dict[str, float]) -> Preset:
    """The preset with the slider values of the keys it uses (others ignored), re-validated by the schema."""
    integer = {s.label: s.integer for s in slider_pool()}
    used = preset_values(preset, 2, 24.0)
    top, sections = {}, {"time": {}, "camera": {}}
    for label, value in values.items():
        if label not in used or value is None:
            continue
        section, _, key = label.rpartition(".")
        lo, hi = used[label][1:]
        number = min(max(value, lo), hi)
        number = int(round(number)) if integer[label] else float(number)
        if section:
            sections[section][key] = number
        else:
            top[key] = number
    return preset.with_overrides(**top, **{k: v for k, v in sections.items() if v})
