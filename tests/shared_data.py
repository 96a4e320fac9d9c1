"""The project's reference data, read where it lives (``../shared/data`` beside the checkout).

Tests that need a file skip, with a reason naming where it was looked for, when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CHINCHILLA_CSV = SHARED_DATA / "chinchilla_svg_extracted.csv"


def chinchilla_csv_path() -> Path:
    """Epoch's 245 Chinchilla points (see ``../shared/data/README.md``), or a skip."""
    if not CHINCHILLA_CSV.is_file():
        pytest.skip(f"Epoch's Chinchilla data not found at {CHINCHILLA_CSV}")
    return CHINCHILLA_CSV
