"""What the browser tests of the dashboard and its screenshot script share: Debian's
Chromium driven by Playwright, and a login."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Debian's package (``apt-get install chromium``); Playwright cannot download browsers here.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    configured = os.environ.get("CSMS_TEST_CHROMIUM", "").strip()
    if configured:
        return configured if Path(configured).exists() else None
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


def require_chromium() -> str:
    """The browser's path; skips the test without one (fails it under CI=true)."""
    path = chromium_path()
    if path is None:
        where = os.environ.get("CSMS_TEST_CHROMIUM", "").strip() or "/usr/bin/chromium"
        reason = (
            f"no Chromium at {where} (apt-get install chromium, or set CSMS_TEST_CHROMIUM):"
            " the dashboard's browser tests need it"
        )
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{reason} (CI=true: they must run, not skip)", pytrace=False)
        pytest.skip(reason)
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is not installed: make install (it is in the test extras)")
    return str(path)


LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
