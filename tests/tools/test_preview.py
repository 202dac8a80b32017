"""`prelabel preview DIR` draws a run's labels into PNGs and one page that headless
Chromium renders: one card per image, most uncertain first, pictures visible."""
from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prelabel.journal import Journal
from prelabel.preview import REVIEW_COLOURS
from tests.photos import photo_path
from tests.tools import samples as samples_mod

pytestmark = [pytest.mark.tools, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
BACKGROUND = (90, 120, 150)  # the drawn photos' background (tests/tools/samples.py)


@pytest.fixture(scope="session")
def chromium() -> str:
    subprocess.run(["bash", str(REPO / "scripts" / "ensure_chromium.sh")], check=True, timeout=600)
    return shutil.which("chromium")


def headless(chromium: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", *args], capture_output=True, text=True, timeout=120, check=True)


@contextlib.contextmanager
def sample_journal(tmp_path: Path) -> Iterator[tuple[list[samples_mod.Sample], Path, Journal]]:
    """(samples, run folder, its journal) with an ok record per drawn sample, as
    `prelabel annotate` leaves it; the journal stays open so a test can append more."""
    samples = samples_mod.make_samples(tmp_path / "in")
    run = tmp_path / "run"
    run.mkdir()
    with Journal(run / "journal.jsonl") as journal:
        for s in samples:
            journal.append_ok(s.image_id, str(s.path), s.response)
        yield samples, run, journal


@pytest.fixture
def preview_run(tmp_path):
    with sample_journal(tmp_path) as (samples, run, journal):
        journal.append_rejected(str(tmp_path / "in/bad.jpg"), str(tmp_path / "in/bad.jpg"), "INVALID_ARGUMENT: x")
    done = subprocess.run([sys.executable, "-m", "prelabel.cli", "preview", str(run), "--max-side", "400"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return samples, run / "preview" / "index.html"


def test_preview_lists_one_card_per_image_most_uncertain_first_when_run_has_labels(preview_run):
    samples, page = preview_run
    html = page.read_text()
    ids = re.findall(r'<figure class="card" data-image-id="([^"]+)"', html)
    expected = sorted(samples, key=lambda s: (-s.response.uncertainty.score, -s.response.uncertainty.needs_review_count))
    assert ids == [s.image_id for s in expected]  # the rejected image has no card
    pictures = sorted(page.parent.glob("*.png"))
    assert len(pictures) == len(samples)
    sizes = [Image.open(p).size for p in pictures]
    assert max(max(s) for s in sizes) == 400  # scaled down to --max-side, never up
    colours = set()
    for picture in pictures:
        with Image.open(picture) as im:
            colours |= {tuple(c) for c in np.asarray(im.convert("RGB")).reshape(-1, 3)}
    assert {REVIEW_COLOURS[r] for r in ("auto_accept", "needs_review", "reject")} <= colours  # boxes drawn


def test_preview_renders_in_headless_chromium_when_opened(preview_run, chromium, tmp_path):
    samples, page = preview_run
    dom = headless(chromium, "--dump-dom", page.as_uri()).stdout
    assert dom.count('<figure class="card"') == len(samples)
    shot = tmp_path / "preview.png"
    headless(chromium, f"--screenshot={shot}", "--window-size=1280,1400", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 20  # not blank
    # The drawn photos' background shows only if the PNGs loaded (the page itself has none of it).
    assert (np.abs(pixels.astype(int) - BACKGROUND).sum(axis=2) < 6).sum() > 20_000


def test_preview_draws_the_last_record_and_the_most_uncertain_when_journal_is_torn_and_limited(tmp_path):
    from prelabel.preview import read_journal, write_preview

    with sample_journal(tmp_path) as (samples, run, journal):
        again = samples[0].response.__class__()
        again.CopyFrom(samples[0].response)
        again.uncertainty.score = 0.99  # the image's last record: now the most uncertain
        journal.append_ok(samples[0].image_id, str(samples[0].path), again)
    with open(run / "journal.jsonl", "ab") as fh:
        fh.write(b'{"v": 1, "image_id": "torn"')  # a killed run's last line
    before = (run / "journal.jsonl").read_bytes()
    items = list(read_journal(str(run / "journal.jsonl")))
    assert [i.image_id for i in items] == [s.image_id for s in samples[1:]] + [samples[0].image_id]
    page = write_preview(str(run), limit=2, max_side=200)
    ids = re.findall(r'data-image-id="([^"]+)"', Path(page).read_text())
    assert ids[0] == samples[0].image_id and len(ids) == 2
    assert (run / "journal.jsonl").read_bytes() == before  # read-only


REAL_PHOTOS = ["astronaut.png", "motorcycle_left.png", "coffee.png", "rocket.jpg", "chelsea.png", "horse.png"]


@pytest.mark.integration
async def test_preview_draws_one_region_per_object_with_captions_apart_when_real_suite_labelled_photos(
        router_address, chromium, tmp_path):
    """Real photos through the real suite (every task): one caption per object, none over
    another, fewer objects than labels where tasks agree (a person's box, mask and keypoints),
    masks visible; the page screenshot is kept (`preview.png` in the test's folder) to look at."""
    from prelabel.formats.common import iter_labels
    from prelabel.formats.objects import group_objects
    from prelabel.preview import MASK_ALPHA, read_journal, render

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in REAL_PHOTOS:
        shutil.copy(photo_path(name), photos / name)
    run = tmp_path / "run"
    annotate = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "prelabel.cli", "annotate", str(photos), "--out", str(run), "--router", router_address,
        "--tasks", "detect,segment,keypoints,faces", "--formats", "coco", "--no-progress", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    log, _ = await asyncio.wait_for(annotate.communicate(), 600)
    assert annotate.returncode == 0, log.decode(errors="replace")

    grouped = 0
    for item in read_journal(str(run / "journal.jsonl")):
        objects = group_objects(iter_labels(item.response))
        labels = list(iter_labels(item.response))
        grouped += len(labels) - len(objects)
        drawn = render(item, 800)
        assert len(drawn.captions) == len(objects), item.image_id
        for i, a in enumerate(drawn.captions):
            assert not any(a.overlaps(b) for b in drawn.captions[i + 1:]), item.image_id
        if item.image_id.endswith("astronaut.png"):
            # the astronaut: detect, segment and keypoints of her are one object
            person = [o for o in objects if o.category == "person"]
            assert [label.task.name for label in person[0].labels] == ["detect", "segment", "keypoints"]
            # her mask is filled at MASK_ALPHA: the review colour shows through
            pixels = np.asarray(drawn.image).reshape(-1, 3).astype(int)
            mask_review = person[0].labels[1].review
            colour = np.array(REVIEW_COLOURS[mask_review])
            assert MASK_ALPHA >= 0.4 and (np.abs(pixels - colour).sum(axis=1) < 30).sum() > 500
    assert grouped > 0

    done = subprocess.run([sys.executable, "-m", "prelabel.cli", "preview", str(run)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    page = run / "preview" / "index.html"
    shot = tmp_path / "preview.png"
    await asyncio.to_thread(headless, chromium, f"--screenshot={shot}", "--window-size=1700,2400", page.as_uri())
    assert np.asarray(Image.open(shot).convert("RGB")).std() > 20
