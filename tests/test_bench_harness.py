"""Benchmark harness end to end: CLI, table, JSON schema, exit codes, summarise, and the selfcheck suite."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pgdvs.bench import harness, metrics
from pgdvs.bench.registry import SUITES, STANDARD_KEYS, Suite

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_suite(monkeypatch):
    """A registered suite whose rows come from the test: checks option plumbing and exit codes."""
    seen = {}

    def add_arguments(parser):
        parser.add_argument("--alpha", type=float, default=1.0)

    def run(args):
        seen["args"] = args
        return [
            {"scene": "s1", "protocol": "rig", "method": "a", "psnr": 30.0, "ssim": 0.9, "flicker": np.float32(0.5),
             "passed": True},
            {"scene": "s2", "protocol": "rig", "method": "a", "psnr": math.inf, "ssim": float("nan"),
             "passed": args.alpha < 2},
        ]

    monkeypatch.setitem(SUITES, "fake", Suite("fake", "rows from the test", run, add_arguments))
    return seen


def test_list(capsys):
    assert harness.main(["--list"]) == 0
    assert "selfcheck" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown suite 'nope'; available suites: "),
    ([], "no suite given; available suites: "),
])
def test_unknown_or_missing_suite_lists_suites(capsys, argv, message):
    assert harness.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message) and "selfcheck" in err


def test_options_reach_the_suite(fake_suite, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(harness.CACHE_ENV, str(tmp_path / "cache"))
    assert harness.main(["fake", "--size", "bench", "--alpha", "1.5"]) == 0
    args = fake_suite["args"]
    assert (args.size, args.device, args.alpha, args.cache_dir) == ("bench", "cpu", 1.5, tmp_path / "cache")
    assert harness.main(["fake", "--cache-dir", str(tmp_path / "x")]) == 0
    assert fake_suite["args"].cache_dir == tmp_path / "x"
    with pytest.raises(SystemExit):
        harness.main(["fake", "--size", "huge"])
    with pytest.raises(SystemExit):
        harness.main(["fake", "--beta", "1"])


def test_failed_row_exits_nonzero_and_still_writes_json(fake_suite, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert harness.main(["fake", "--alpha", "3", "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "1 FAILED" in text and "FAIL" in text
    report = json.loads(out.read_text())
    assert report["suite"] == "fake" and report["size"] == "small" and len(report["rows"]) == 2
    assert report["rows"][1]["psnr"] == "inf" and report["rows"][1]["ssim"] == "nan"
    assert report["rows"][0]["flicker"] == 0.5  # numpy scalars become plain numbers
    back = harness.read_json(out)
    assert back["rows"][1]["psnr"] == math.inf and math.isnan(back["rows"][1]["ssim"])


def test_cuda_request_without_cuda(fake_suite, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert harness.main(["fake", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_table_is_fixed_width():
    rows = [{"scene": "a", "method": "m1", "psnr": 31.234567, "ssim": 0.91234, "passed": True},
            {"scene": "long-scene-name", "method": "m2", "psnr": math.inf, "ssim": None, "extra": 3,
             "passed": False}]
    lines = harness.format_table(rows).splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert lines[0].split() == ["scene", "method", "psnr", "ssim", "passed", "extra"]
    assert lines[2].split() == ["a", "m1", "31.23", "0.9123", "pass", "-"]
    assert lines[3].split() == ["long-scene-name", "m2", "inf", "-", "FAIL", "3"]


def test_json_safe_and_atomic_write(tmp_path):
    assert harness.json_safe({"a": [np.float64(-np.inf), np.int64(3)], "b": np.array([1.0, np.nan])}) == {
        "a": ["-inf", 3], "b": [1.0, "nan"]}
    with pytest.raises(TypeError):
        harness.write_json(tmp_path / "r.json", {"rows": [{"x": object()}]})
    assert list(tmp_path.iterdir()) == []


def test_summarise():
    rows = [
        {"scene": "s1", "protocol": "rig", "method": "a", "psnr": 30.0, "ssim": 0.8, "flicker": None},
        {"scene": "s2", "protocol": "rig", "method": "a", "psnr": 20.0, "ssim": float("nan"), "flicker": 0.1},
        {"scene": "s1", "protocol": "rig", "method": "b", "psnr": math.inf, "ssim": 1.0},
        {"scene": "s1", "protocol": "handheld", "method": "a", "psnr": 10.0, "passed": True},
    ]
    out = harness.summarise(rows)
    assert [(r["protocol"], r["method"], r["n"]) for r in out] == [("rig", "a", 2), ("rig", "b", 1),
                                                                  ("handheld", "a", 1)]
    assert out[0]["psnr"] == 25.0 and out[0]["ssim"] == 0.8 and out[0]["n_ssim"] == 1
    assert out[0]["flicker"] == pytest.approx(0.1) and "scene" not in out[0]
    assert out[1]["psnr"] == math.inf and "passed" not in out[2]
    by_scene = harness.summarise(rows, by=("scene",), keys=("psnr",))
    assert by_scene[0] == {"scene": "s1", "n": 3, "psnr": math.inf}


# ---------------------------------------------------------------- selfcheck


def test_selfcheck_passes_and_follows_the_schema(tmp_path, capsys):
    out = tmp_path / "sc.json"
    assert harness.main(["selfcheck", "--frames", "2", "--json", str(out)]) == 0
    assert "selfcheck" in capsys.readouterr().out
    report = harness.read_json(out)
    assert report["suite"] == "selfcheck" and report["size"] == "small"
    rows = {r["method"]: r for r in report["rows"]}
    for row in report["rows"]:
        assert list(row)[: len(STANDARD_KEYS)] == list(STANDARD_KEYS)
        assert row["passed"] in (True, None)
    assert rows["identity"]["psnr"] == math.inf and rows["identity"]["ssim"] == 1.0
    assert rows["offset+0.01"]["psnr"] == pytest.approx(40.0, abs=1e-9)
    assert rows["alternating+-0.01"]["flicker"] == pytest.approx(0.02, abs=1e-9)
    lpips_row = rows["lpips"]
    if metrics.lpips_status() == "missing":
        assert lpips_row["lpips"] is None and lpips_row["passed"] is None


def test_selfcheck_catches_a_wrong_metric(monkeypatch, capsys):
    real = metrics.psnr

    def off_by_a_little(*args, **kwargs):
        return real(*args, **kwargs) + 0.01

    monkeypatch.setattr(metrics, "psnr", off_by_a_little)
    assert harness.main(["selfcheck", "--frames", "2"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_command_line(tmp_path):
    out = tmp_path / "cli.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "pgdvs.bench", "selfcheck", "--size", "small", "--frames", "2",
                           "--json", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:3] == ["scene", "protocol", "method"]
    assert json.loads(out.read_text())["rows"][0]["psnr"] == "inf"
