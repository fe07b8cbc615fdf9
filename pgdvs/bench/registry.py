"""Benchmark suites are plugins: modules in ``pgdvs.bench.suites`` call :func:`register_suite`."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

# Row keys every suite fills where they apply (others welcome).
STANDARD_KEYS = ("scene", "protocol", "method", "psnr", "ssim", "psnr_dynamic", "psnr_static", "flicker",
                 "seconds_per_frame")


@dataclass
class Suite:
    name: str
    description: str
    run: Callable[[argparse.Namespace], list[dict]]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


SUITES: dict[str, Suite] = {}


def register_suite(name: str, description: str, add_arguments=None):
    """Decorator: ``@register_suite("selfcheck", "...")`` on ``run(args) -> list[row dict]``."""
    def wrap(run):
        SUITES[name] = Suite(name, description, run, add_arguments)
        return run
    return wrap


def load_suites() -> dict[str, Suite]:
    from . import suites

    for info in pkgutil.iter_modules(suites.__path__):
        importlib.import_module(f"{suites.__name__}.{info.name}")
    return SUITES
