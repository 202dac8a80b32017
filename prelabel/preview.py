"""`prelabel preview DIR`: what a person looks at before importing thousands of drafts.

Reads the journal of a bulk run (`DIR/journal.jsonl`, read-only: a torn last line is
skipped, never cut) and draws each labelled image object by object (formats.objects: a
person's detect box, mask and keypoints are one object) -- its box, its mask filled and
outlined, person keypoints with the skeleton, face landmarks, and one caption per object,
"person  det 0.93  seg 0.88  kp 0.71": the category, then which tasks labelled it with their
scores, captions never over one another -- each label coloured by its review decision
(auto_accept green, needs_review orange, reject red), into `DIR/preview/NNNNN.png`,
plus one page, `DIR/preview/index.html`, with one card per image, most uncertain first
(the review queue's order: uncertainty, then labels needing review, then margin).

Images are scaled so their longer side is at most `max_side` pixels; `limit` bounds how
many are drawn (the most uncertain ones).
"""
from __future__ import annotations

import heapq
import html
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps
from pycocotools import mask as mask_utils

from prelabel.atomic import atomic_write_text
from prelabel.core.tasks import LabelKind
from prelabel.formats.common import Label, iter_labels
from prelabel.formats.objects import LabelledObject, group_objects
from prelabel.journal import STATUS_OK, response_of
from prelabel.v1 import prelabel_pb2

DIR_NAME = "preview"
REVIEW_COLOURS = {"auto_accept": (46, 160, 67), "needs_review": (245, 140, 20), "reject": (215, 40, 40),
                  "unspecified": (120, 120, 220)}


@dataclass
class Item:
    number: int  # input order (journal order)
    image_id: str
    path: str
    response: prelabel_pb2.PreLabelResponse

    @property
    def sort_key(self) -> tuple:
        u = self.response.uncertainty
        return (-round(u.score, 5), -u.needs_review_count, round(u.min_margin, 5), self.number)


def read_journal(path: str) -> Iterator[Item]:
    """The last `ok` record of every image, without writing to the journal. Memory: one
    offset per image (records are parsed one at a time on a second pass)."""
    last: dict[str, int] = {}
    with open(path, "rb") as fh:
        offset = 0
        for line in fh:
            if not line.endswith(b"\n"):
                break  # torn tail of a killed run
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and isinstance(record.get("image_id"), str):
                last.pop(record["image_id"], None)  # insertion order = order of last records
                last[record["image_id"]] = offset
            offset += len(line)
        for n, start in enumerate(last.values(), 1):
            fh.seek(start)
            record = json.loads(fh.readline())
            if record.get("status") == STATUS_OK and isinstance(record.get("response"), dict):
                yield Item(n, record["image_id"], record.get("path") or record["image_id"], response_of(record))


def _load_image(item: Item) -> Image.Image:
    w, h = item.response.image_size.width or 640, item.response.image_size.height or 480
    try:
        with Image.open(item.path) as im:
            # Label coordinates are in pixels of the upright image (EXIF applied).
            return ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, ValueError):
        return Image.new("RGB", (w, h), (60, 60, 60))  # image moved: labels on grey


#: Short task names in captions.
TASK_TAGS = {"detect": "det", "segment": "seg", "keypoints": "kp", "faces": "face"}
MASK_ALPHA = 0.45  # fill over the photo; the outline is opaque
CAPTION_BACKGROUND = (20, 20, 20, 200)


@dataclass(frozen=True)
class CaptionPart:
    text: str
    colour: tuple[int, int, int]


def caption_of(obj: LabelledObject) -> list[CaptionPart]:
    """"person  det 0.93  seg 0.88  kp 0.71": the category, then each task's score in its
    review colour."""
    parts = [CaptionPart(obj.category, (255, 255, 255))]
    for label in obj.labels:
        parts.append(CaptionPart(f"{TASK_TAGS.get(label.task.name, label.task.name)} {label.detection.score:.2f}",
                                 REVIEW_COLOURS.get(label.review, REVIEW_COLOURS["unspecified"])))
    return parts


def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)  # Pillow's own scalable font (>= 10.1)
    assert isinstance(font, ImageFont.FreeTypeFont)
    return font


def place_caption(anchor: Box, size: tuple[float, float], taken: list[Box], image_size: tuple[int, int]) -> Box:
    """Where a caption of `size` goes for an object at `anchor`: above it, else inside its
    top; moved down past the captions already placed (`taken`) -- and, once past the image's
    bottom, up above them -- so that no two overlap."""
    w, h = size
    x = min(max(0.0, anchor.x0), max(0.0, image_size[0] - w))
    start = anchor.y0 - h if anchor.y0 - h >= 0 else anchor.y0
    # Candidate tops: the preferred one, then just below / above each placed caption.
    candidates = [start] + sorted({t.y1 + 1 for t in taken} | {t.y0 - h - 1 for t in taken},
                                  key=lambda y: abs(y - start))
    for y in candidates:
        box = Box(x, y, x + w, y + h)
        if 0 <= y <= image_size[1] - h and not any(box.overlaps(t) for t in taken):
            return box
    return Box(x, start, x + w, start + h)  # nowhere free: over the others, as a last resort


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


@dataclass(frozen=True)
class Rendering:
    image: Image.Image
    captions: list[Box]  # where each object's caption went, in drawing order


def render(item: Item, max_side: int = 800) -> Rendering:
    """The image with its labels drawn, scaled to at most `max_side`: one region per object
    (formats.objects: the detect box, with its mask and keypoints from the other tasks), one
    caption per object naming the tasks that labelled it, each in its review colour."""
    image = _load_image(item)
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    width = max(2, round(max(image.size) / 300))
    font = _font(max(11, round(max(image.size) / 45)))
    schemas = {tuple(s.keypoint_names): list(s.skeleton) for s in item.response.keypoint_schemas}
    objects = group_objects(iter_labels(item.response))
    captions: list[tuple[Box, list[CaptionPart]]] = []
    for obj in objects:
        mask_label = obj.of_kind(LabelKind.MASK)
        if mask_label is not None and mask_label.mask is not None and mask_label.mask.mask.counts:
            colour = REVIEW_COLOURS.get(mask_label.review, REVIEW_COLOURS["unspecified"])
            rle = mask_label.mask.mask
            m = Image.fromarray(mask_utils.decode({"size": list(rle.size), "counts": rle.counts}) * 255)
            m = m.resize(image.size)
            overlay.paste(Image.new("RGBA", image.size, colour + (round(255 * MASK_ALPHA),)), (0, 0), m)
            # the mask's outline: its edge pixels, thickened
            edge = ImageChops.subtract(m, m.filter(ImageFilter.MinFilter(3))).filter(ImageFilter.MaxFilter(3))
            overlay.paste(Image.new("RGBA", image.size, colour + (255,)), (0, 0), edge)
        anchor = obj.anchor
        b = anchor.detection.box
        box = Box(b.x_min * scale, b.y_min * scale, b.x_max * scale, b.y_max * scale)
        if anchor.kind is not LabelKind.MASK:  # a mask alone is drawn by its outline
            colour = REVIEW_COLOURS.get(anchor.review, REVIEW_COLOURS["unspecified"])
            draw.rectangle([box.x0, box.y0, box.x1, box.y1], outline=colour + (255,), width=width)
        for label in obj.labels:
            if label.kind is LabelKind.KEYPOINTS and label.keypoints is not None:
                _draw_keypoints(draw, label, schemas, scale, width)
        captions.append((box, caption_of(obj)))
    taken: list[Box] = []
    gap = max(4, round(font.size / 2))
    ascent, descent = font.getmetrics()
    for box, parts in captions:
        widths = [draw.textlength(p.text, font=font) for p in parts]
        spot = place_caption(box, (sum(widths) + gap * (len(parts) + 1), ascent + descent + 4), taken, image.size)
        draw.rectangle([spot.x0, spot.y0, spot.x1, spot.y1], fill=CAPTION_BACKGROUND)
        x = spot.x0 + gap
        for part, w in zip(parts, widths, strict=True):
            draw.text((x, spot.y0 + 2), part.text, fill=part.colour + (255,), font=font)
            x += w + gap
        taken.append(spot)
    return Rendering(Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB"), taken)


def _draw_keypoints(draw: ImageDraw.ImageDraw, label: Label, schemas: dict, scale: float, width: int) -> None:
    assert label.keypoints is not None
    colour = REVIEW_COLOURS.get(label.review, REVIEW_COLOURS["unspecified"])
    kps = list(label.keypoints.keypoints)
    flat = schemas.get(tuple(k.name for k in kps), [])
    for a, c in zip(flat[0::2], flat[1::2], strict=False):  # 1-based skeleton edges
        p, q = kps[a - 1] if a <= len(kps) else None, kps[c - 1] if c <= len(kps) else None
        if p is not None and q is not None and p.visibility and q.visibility:
            draw.line([p.x * scale, p.y * scale, q.x * scale, q.y * scale], fill=colour + (220,), width=width)
    r = width + 1
    for kp in kps:
        if kp.visibility:
            x, y = kp.x * scale, kp.y * scale
            # visible: filled; labelled but occluded (v=1): hollow
            draw.ellipse([x - r, y - r, x + r, y + r], outline=colour + (255,),
                         fill=colour + (255,) if kp.visibility == 2 else None, width=max(1, width // 2))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prelabel preview</title>
<style>
body {{ font-family: sans-serif; margin: 16px; background: #f4f4f4; }}
.legend span {{ padding: 2px 8px; margin-right: 8px; color: #fff; border-radius: 3px; }}
.card {{ display: inline-block; vertical-align: top; margin: 8px; padding: 8px; background: #fff;
        border-radius: 6px; box-shadow: 0 1px 3px #0003; max-width: {max_side}px; }}
.card img {{ max-width: 100%; display: block; }}
.card figcaption {{ font-size: 13px; margin-top: 6px; word-break: break-all; }}
</style></head><body>
<h1>prelabel preview: {count} images, most uncertain first</h1>
<p class="legend"><span style="background:rgb{accept}">auto_accept</span><span style="background:rgb{review}">needs_review</span><span style="background:rgb{reject}">reject</span>
one caption per object: category, then each task that labelled it (det = detect, seg = segment, kp = keypoints, face = faces) with its score, in its review colour</p>
{cards}
</body></html>
"""

CARD = """<figure class="card" data-image-id="{image_id}" data-uncertainty="{u:.5f}">
<img src="{src}" alt="{image_id}" width="{w}" height="{h}">
<figcaption><b>{image_id}</b><br>uncertainty {u:.3f} &middot; needs review {nr} &middot; {labels}</figcaption>
</figure>"""


def write_preview(run_dir: str, *, limit: int = 500, max_side: int = 800) -> str:
    """Draw the run's images (most uncertain first, at most `limit`) and write the page;
    returns the page's path."""
    # nsmallest keeps `limit` items in memory, not the whole run
    items = heapq.nsmallest(limit, read_journal(os.path.join(run_dir, "journal.jsonl")), key=lambda i: i.sort_key)
    out = os.path.join(run_dir, DIR_NAME)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):  # a previous preview's pictures
        if old.endswith(".png") and old[:-4].isdigit():
            os.unlink(os.path.join(out, old))
    cards = []
    for rank, item in enumerate(items, 1):
        name = f"{rank:05d}.png"
        image = render(item, max_side).image
        image.save(os.path.join(out, name))
        counts: dict[str, int] = {}
        for label in iter_labels(item.response):
            counts[label.task.name] = counts.get(label.task.name, 0) + 1
        summary = ", ".join(f"{n} {t}" for t, n in counts.items()) or "no labels"
        cards.append(CARD.format(image_id=html.escape(item.image_id), src=name, w=image.width, h=image.height,
                                 u=item.response.uncertainty.score, nr=item.response.uncertainty.needs_review_count,
                                 labels=html.escape(summary)))
    page = PAGE.format(count=len(items), max_side=max_side, cards="\n".join(cards),
                       accept=REVIEW_COLOURS["auto_accept"], review=REVIEW_COLOURS["needs_review"],
                       reject=REVIEW_COLOURS["reject"])
    path = os.path.join(out, "index.html")
    atomic_write_text(path, page)
    return path
