"""The report in headless Chromium: the DOM has the images and the metric table, and a
screenshot is a real, non-blank picture. Marked integration (needs /usr/bin/chromium)."""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from tests.visualize_fixtures import png_size, write_rejected, write_run
from visualize.report import Rendered, render_run

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]
TIMEOUT = 120


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium (as root: no sandbox) with a fresh profile and no network use."""
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    results = tmp_path_factory.mktemp("results")
    write_run(results, sequence=1)
    write_run(results, sequence=2, n_users=400, n_products=80, recs_per_user=10)
    write_rejected(results, sequence=3)
    return render_run(results)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        elif tag == "table":
            self.tables += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_dom_has_every_image_and_the_metric_table(report: Rendered, tmp_path: Path) -> None:
    done = _chromium(tmp_path / "profile", "--dump-dom", report.index.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    assert len(dom.images) == 4
    for src in dom.images:
        assert png_size(report.out_dir / src), src
    text = " ".join(dom.text)
    assert dom.tables >= 1
    assert "Model vs baseline" in text
    assert "NDCG@10" in text and "baseline" in text


def test_screenshot_is_a_non_blank_png(report: Rendered, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    done = _chromium(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
        report.index.resolve().as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert png_size(shot) == (1280, 2000)
    pixels = mpimg.imread(shot)[..., :3]
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the screenshot is (nearly) one colour"
    # the top of the page holds the (orange/blue) quality picture, not just text
    assert pixels.std() > 0.05
