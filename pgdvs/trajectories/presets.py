"""Read presets from YAML files: one preset per file in ``presets/``; drop a file there to add one."""
from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import InputError
from .schema import Preset, parse_preset

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"
SUFFIXES = (".yaml", ".yml")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path):
    """Parse one YAML file; syntax errors and duplicate keys raise InputError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise InputError(f"{where}: YAML error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: YAML error: {exc}") from None


def load_preset(path: str | Path) -> Preset:
    """Read and validate one preset file. Raises InputError naming the file (and line or key)."""
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        raise InputError(f"{path}: empty file (a preset needs at least 'name' and 'description')")
    return parse_preset(data, str(path))


def scan_presets(folder: str | Path | None = None) -> tuple[dict[str, Preset], list[InputError]]:
    """Load every ``*.yaml`` / ``*.yml`` in ``folder`` (default: the shipped ``presets/``), sorted by name.

    Returns (presets by name, one InputError per invalid file). Two files with the same ``name`` is an error
    on the second file (in file-name order). Hidden files (leading '.') are skipped.
    """
    folder = Path(folder) if folder is not None else PRESETS_DIR
    if not folder.is_dir():
        raise InputError(f"{folder}: presets folder does not exist")
    presets: dict[str, Preset] = {}
    errors: list[InputError] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and not p.name.startswith(".")):
        try:
            preset = load_preset(path)
        except InputError as exc:
            errors.append(exc)
            continue
        if preset.name in presets:
            errors.append(InputError(f"{path}: key 'name' is {preset.name!r}, already used by "
                                     f"{presets[preset.name].source}; names must be unique"))
            continue
        presets[preset.name] = preset
    return dict(sorted(presets.items())), errors


def load_presets(folder: str | Path | None = None) -> dict[str, Preset]:
    """Every preset of ``folder`` by name; raises one InputError listing each invalid file if any."""
    presets, errors = scan_presets(folder)
    if errors:
        raise InputError("invalid preset file(s):\n" + "\n".join(f"  {e}" for e in errors))
    return presets
