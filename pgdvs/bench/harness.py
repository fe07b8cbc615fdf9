"""Benchmark runner: parse the command line, run one registered suite, print a table, write the JSON.

JSON written by ``--json`` (atomically)::

    {"suite": "selfcheck", "size": "small", "device": "cpu", "seconds": 1.2,
     "rows": [{"scene": ..., "protocol": ..., "method": ..., "psnr": ..., "ssim": ..., "psnr_dynamic": ...,
               "psnr_static": ..., "flicker": ..., "seconds_per_frame": ..., <suite keys>}, ...]}

Every row carries all the standard keys, standard keys first. Non-finite floats are written as the strings
"inf", "-inf" and "nan" (PSNR of identical images is a real "inf", not a missing value); a value a suite did
not compute (e.g. LPIPS without weights, a standard key that does not apply) is null.
A row with ``"passed": false`` makes the process exit with status 1.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from ..errors import InputError, PGDVSError
from .registry import STANDARD_KEYS, Suite, load_suites

SIZES = ("small", "bench")
DEVICES = ("cpu", "cuda")
CACHE_ENV = "PGDVS_BENCH_CACHE"
DEFAULT_CACHE = Path("~/.cache/pgdvs/bench")


def build_parser(suite: Suite | None = None, add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pgdvs.bench", description="Run a benchmark suite.",
                                     add_help=add_help)
    parser.add_argument("suite", nargs="?", help="suite name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument("--size", choices=SIZES, default="small", help="small: seconds, for tests; bench: the real one")
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"cache for generated data (default ${CACHE_ENV} or {DEFAULT_CACHE})")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the rows here")
    if suite is not None and suite.add_arguments is not None:
        suite.add_arguments(parser.add_argument_group(f"{suite.name} options"))
    return parser


def resolve_suite(name: str | None) -> Suite:
    suites = load_suites()
    if name not in suites:
        known = ", ".join(sorted(suites)) or "none"
        what = "no suite given" if name is None else f"unknown suite {name!r}"
        raise InputError(f"{what}; available suites: {known}")
    return suites[name]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first, _ = build_parser(add_help=False).parse_known_args(argv)  # suite name first: it adds options
    try:
        if first.list:
            print(list_suites())
            return 0
        if first.suite is None:
            build_parser().parse_args(argv)  # prints --help and exits when asked
        suite = resolve_suite(first.suite)
        args = build_parser(suite).parse_args(argv)
        if args.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise InputError("--device cuda requested but torch sees no CUDA device")
        args.cache_dir = Path(args.cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()
        start = time.perf_counter()
        rows = [with_standard_keys(r) for r in suite.run(args)]
        seconds = time.perf_counter() - start
    except PGDVSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows))
    failed = [r for r in rows if r.get("passed") is False]
    print(f"\n{len(rows)} rows in {seconds:.1f} s" + (f"; {len(failed)} FAILED" if failed else ""))
    if args.json is not None:
        write_json(args.json, {"suite": suite.name, "size": args.size, "device": args.device,
                               "seconds": round(seconds, 3), "rows": rows})
        print(f"wrote {args.json}")
    return 1 if failed else 0


def list_suites() -> str:
    suites = load_suites()
    width = max((len(n) for n in suites), default=0)
    return "\n".join(f"{name:<{width}}  {suites[name].description}" for name in sorted(suites))


# ---------------------------------------------------------------- output


def with_standard_keys(row: dict) -> dict:
    """The row with every standard key present (None where the suite gave none), standard keys first."""
    return {**{k: row.get(k) for k in STANDARD_KEYS}, **row}


def table_columns(rows: list[dict]) -> list[str]:
    """Standard keys first (those any row fills), then suite keys in first-seen order."""
    seen = []
    for row in rows:
        seen += [k for k in row if k not in seen]
    present = [k for k in STANDARD_KEYS if any(r.get(k) is not None for r in rows)]
    return present + [k for k in seen if k not in STANDARD_KEYS]


def format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "pass" if value else "FAIL"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        return f"{v:.1f}" if abs(v) >= 1000 else f"{v:.2f}" if abs(v) >= 10 else f"{v:.4f}"
    return str(value)


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Fixed-width text table, one line per row."""
    columns = columns or table_columns(rows)
    cells = [[format_value(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def json_safe(value):
    """numpy -> Python, non-finite floats -> "inf" / "-inf" / "nan" (see module doc)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_json(path: str | Path, report: dict) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n")
    return Path(path)


def read_json(path: str | Path) -> dict:
    """Inverse of :func:`write_json`: "inf" / "-inf" / "nan" strings in metric fields come back as floats."""
    report = json.loads(Path(path).read_text())
    report["rows"] = [{k: float(v) if v in ("inf", "-inf", "nan") else v for k, v in row.items()}
                      for row in report.get("rows", [])]
    return report


# ---------------------------------------------------------------- aggregation


def summarise(rows: list[dict], by: tuple[str, ...] = ("protocol", "method"), keys: tuple[str, ...] | None = None):
    """Mean of each numeric key per group. NaN and None are left out of a mean (then ``n_<key>`` counts what
    went in); inf stays inf. Returns one dict per group, in first-seen order, with the ``by`` keys and ``n``."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in by), []).append(row)
    out = []
    for group_key, members in groups.items():
        summary = dict(zip(by, group_key), n=len(members))
        names = keys or [k for k in table_columns(members) if k not in by]
        for name in names:
            values = [float(r[name]) for r in members if _is_number(r.get(name)) and not math.isnan(float(r[name]))]
            if values:
                summary[name] = float(np.mean(values))
                if len(values) != len(members):
                    summary[f"n_{name}"] = len(values)
        out.append(summary)
    return out


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
