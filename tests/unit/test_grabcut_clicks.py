"""GrabCut seeded by clicks on real photos (scikit-image's), with expectations checked by
hand on the pictures: a positive click on the cup, the cat, the horse and the astronaut
gives a mask containing the click and following the object (points known to be on it
inside, points known to be off it outside); a negative click on a wrongly included region
removes it."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from services.modelkit import grabcut_clicks
from services.modelkit.grabcut_clicks import Seeds

pytestmark = pytest.mark.timeout(60)

MAX_SIDE = 256


def photo(name: str) -> np.ndarray:
    image = getattr(skimage.data, name)()
    if image.ndim == 2:  # the horse: a black silhouette on white
        image = np.stack([np.where(image, 255, 0).astype(np.uint8)] * 3, axis=-1)
    return image


def click(image: np.ndarray, positive=(), negative=(), box=None, previous=None) -> np.ndarray:
    """The mask at source resolution (nearest grid cell) for clicks in source pixels."""
    h, w = image.shape[:2]
    shape = grabcut_clicks.grid_shape(w, h, MAX_SIDE)
    grid = grabcut_clicks.on_grid(image, shape)
    scale = np.array([shape[1] / w, shape[0] / h])
    seeds = Seeds(positive=np.reshape(positive, (-1, 2)) * scale, negative=np.reshape(negative, (-1, 2)) * scale,
                  box=None if box is None else np.reshape(box, (2, 2)).dot(np.diag(scale)).reshape(4),
                  previous=previous)
    return grabcut_clicks.segment(grid, seeds, iterations=5)


def at(mask: np.ndarray, image: np.ndarray, points) -> list[bool]:
    """Mask values at source points."""
    h, w = image.shape[:2]
    gh, gw = mask.shape
    return [bool(mask[min(gh - 1, int(y * gh / h)), min(gw - 1, int(x * gw / w))]) for x, y in points]


# (photo, positive clicks, prompt box or None, points on the object, points off it):
# coordinates read off the pictures by hand. The horse and the cup follow from one click;
# the cat's fur is close to the blurred background, so its annotator draws a box and
# clicks three times (the mask still misses the ears: GrabCut's limit, not asserted).
# The astronaut's one click gives her head and the wall behind it (see the negative-click
# test): only the head is asserted here.
CASES = {
    "horse": ("horse", [(200, 160)], None, [(35, 180), (255, 270), (350, 60), (150, 130)],
              [(20, 20), (380, 300), (200, 300), (100, 40)]),
    "cup": ("coffee", [(300, 200)], (80, 30, 480, 360), [(250, 120), (200, 300), (400, 220)],
            [(20, 20), (560, 60), (560, 380), (40, 300)]),
    "cat": ("chelsea", [(220, 150), (120, 230), (330, 120)], (60, 10, 400, 300),
            [(160, 200), (250, 250), (280, 160)], [(20, 150), (430, 150), (430, 20)]),
    "astronaut": ("astronaut", [(250, 100)], None, [(230, 60), (250, 130), (200, 40)],
                  [(30, 30), (100, 400), (480, 20), (250, 330)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_positive_click_gives_a_mask_that_holds_it_and_follows_the_object(case):
    name, positive, box, on, off = CASES[case]
    image = photo(name)
    mask = click(image, positive, box=box)
    assert at(mask, image, positive) == [True] * len(positive)
    assert at(mask, image, on) == [True] * len(on), "points on the object left out"
    assert at(mask, image, off) == [False] * len(off), "background points included"


def test_a_negative_click_removes_the_wrongly_included_table():
    """Coffee, one click on the cup: the mask runs into the table below the saucer
    (bottom right, seen on the picture). A negative click there removes that region
    and keeps the cup and the saucer."""
    image = photo("coffee")
    first = click(image, [(300, 200)])
    table = (420, 385)
    assert at(first, image, [table, (440, 370)]) == [True] * 2, "premise: the first mask holds the table there"
    refined = click(image, [(300, 200)], [table], previous=first)
    assert at(refined, image, [table, (440, 370)]) == [False] * 2
    assert at(refined, image, [(300, 200), (250, 120), (200, 300), (420, 300)]) == [True] * 4


def test_negative_clicks_remove_the_wall_and_the_rocket_behind_the_astronaut():
    image = photo("astronaut")
    first = click(image, [(250, 100)])
    wall, rocket = (330, 100), (420, 150)
    assert at(first, image, [wall, rocket, (300, 40)]) == [True] * 3, "premise: the click took the wall too"
    refined = click(image, [(250, 100)], [wall, rocket], previous=first)
    assert at(refined, image, [wall, rocket, (300, 40), (400, 60)]) == [False] * 4
    assert at(refined, image, [(250, 100), (230, 60), (200, 40)]) == [True] * 3


def test_a_box_alone_keeps_the_mask_inside_it():
    image = photo("coffee")
    mask = click(image, box=(80, 30, 480, 360))
    h, w = image.shape[:2]
    rows, cols = np.nonzero(mask)
    assert mask.any()
    assert cols.min() * w / mask.shape[1] >= 80 - 3 and (cols.max() + 1) * w / mask.shape[1] <= 480 + 3
    assert rows.min() * h / mask.shape[0] >= 30 - 3 and (rows.max() + 1) * h / mask.shape[0] <= 360 + 3


def test_one_colour_image_answers_the_seeds_without_failing():
    image = np.full((100, 100, 3), 128, np.uint8)
    mask = click(image, [(50, 50)])
    assert mask[50 * mask.shape[0] // 100, 50 * mask.shape[1] // 100] == 1


def test_the_answer_is_the_same_whatever_ran_before():
    image = photo("chelsea")
    first = click(image, [(220, 150)])
    click(photo("coffee"), [(300, 200)])
    assert np.array_equal(first, click(image, [(220, 150)]))
