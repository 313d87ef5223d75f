"""What a compare report reads: the finished runs' metrics, per (base model, system, benchmark) and seed.

Filled by `report.collect`; read by the report's tables (report.py), its significance section
(report_significance.py) and its image-text claims (report_image_text.py). It knows no table or test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Results:
    """What the finished runs measured: (base, system, benchmark) -> per seed, metrics.json and its folder."""

    config: Any  # the grid.CompareConfig the runs belong to
    metrics: dict[tuple[str, str, str], list[dict]] = field(default_factory=lambda: defaultdict(list))
    dirs: dict[tuple[str, str, str], list[Path]] = field(default_factory=lambda: defaultdict(list))
    systems: dict[str, list[str]] = field(default_factory=dict)  # base -> systems with a result, grid order
    left_out: int = 0  # runs not (yet) complete

    def rows(self, base: str, system: str, bench: str) -> list[dict]:
        return self.metrics.get((base, system, bench), [])


def mean_sd(values: list[float], digits: int = 3) -> str:
    """'m ± sd' over the finite values (sd with ddof 1), 'm' for one value, '–' for none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "–"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"
