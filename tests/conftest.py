"""Shared pytest setup.

Browser tests (``@pytest.mark.browser``) drive Debian's headless ``chromium`` through ``chromium-driver`` and
dash[testing]'s ``dash_duo``; plain ``pytest`` runs them headless (no display needed).  Where the browser,
the driver or dash[testing] is missing they are skipped, with the reason.
"""

from __future__ import annotations

import shutil

import pytest

CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--enable-unsafe-swiftshader", "--window-size=1500,1900")


def _browser_missing() -> str | None:
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        return "no chromium on PATH (apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    try:
        import dash.testing.browser  # noqa: F401
        import selenium  # noqa: F401
    except ImportError:
        return "dash[testing] is not installed (pip install 'dash[testing]==4.4.1')"
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_setup_options():
    """dash[testing]'s hook: the Chrome options every dash_duo browser starts with."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    return options  # pluggy collects hook results into the list dash[testing] expects


def pytest_collection_modifyitems(config, items):
    reason = _browser_missing()
    if reason:
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))

# The dashboard needs dash and plotly (the package's dependencies); a GPU box that only has the kernel's
# dependencies (say `pytest -m gpu` on the device machine) still collects everything else.
import importlib.util as _ilu  # noqa: E402

if _ilu.find_spec("dash") is None or _ilu.find_spec("plotly") is None:
    collect_ignore_glob = ["test_dashboard_*.py"]
