"""A browser of the tests leaves nothing behind (tests/station/browsing.py): its profile,
chromium's other temporary files and the crash reporter's database are in a directory of its
own, which is gone once it has quit."""

from __future__ import annotations

from pathlib import Path

from tests.station.browsing import BROWSER_DIR_PREFIX, start_browser


def test_a_browser_keeps_its_files_in_a_directory_of_its_own_and_removes_it() -> None:
    session = start_browser()
    browser = next(session)
    try:
        browser.get("data:text/html,<p>here</p>")
        profile = Path(browser.capabilities["chrome"]["userDataDir"])
        where = profile.parent.parent  # <where>/tmp/<chromedriver's profile>
        assert where.name.startswith(BROWSER_DIR_PREFIX), profile
        # the singleton socket's directory (chromium leaves it when chromedriver ends it)
        assert [p for p in (where / "tmp").glob("org.chromium.Chromium.*") if p != profile]
        assert (where / "config" / "chromium" / "Crash Reports").is_dir()
    finally:
        session.close()
    assert not where.exists()
