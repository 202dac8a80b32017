"""Output formats of a bulk run, each written from the journal at the end of a shard.

`write_outputs` feeds every finished image, in input order, to one writer per format and
to the review queue; each writer makes its output appear atomically when closed (coco also
writes the CVAT labels for its files, formats.cvat_labels). Which labels each takes:
formats.common.output_labels (masks of area 0 in none; the review filter in YOLO and Label
Studio only); one-polygon formats simplify it: formats.polygons.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Collection, Iterable
from typing import NamedTuple

from prelabel.formats.coco import CocoWriter
from prelabel.formats.common import DEFAULT_OUTPUTS_REVIEW, OutputWriter, image_root_of
from prelabel.formats.labelstudio import LabelStudioWriter
from prelabel.formats.polygons import DEFAULT_TOLERANCE_PX
from prelabel.formats.review_queue import ReviewQueueWriter
from prelabel.formats.yolo import YoloWriter
from prelabel.v1 import prelabel_pb2

#: --formats name -> writer. The review queue is always written.
WRITERS = {"coco": CocoWriter, "yolo": YoloWriter, "labelstudio": LabelStudioWriter}


class FinishedImage(NamedTuple):
    """One labelled image of a shard, as every writer is fed it."""

    number: int  # 1-based position in the shard's input order
    image_id: str
    path: str  # the file that was read ("" when unknown)
    response: prelabel_pb2.PreLabelResponse


def val_fraction(text: str) -> float:
    """argparse type of --yolo-val-fraction: a share in [0, 1)."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("must be in [0, 1)")
    return value


def polygon_tolerance(text: str) -> float:
    """argparse type of --polygon-tolerance: pixels, >= 0."""
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def options_from_args(args, inputs) -> dict:
    """write_outputs options from `prelabel annotate`'s flags; the image root comes from
    every input of the run (not just this shard), so all shards name images alike."""
    root = args.image_root if args.image_root is not None else image_root_of(im.image_id for im in inputs)
    return {"image_root": root, "image_prefix": args.ls_image_prefix, "ls_masks": args.ls_masks,
            "val_fraction": args.yolo_val_fraction, "review": list(args.outputs_review),
            "polygon_tolerance": args.polygon_tolerance}


def write_outputs(
    out_dir: str | os.PathLike,
    formats: Iterable[str],
    finished: Iterable[FinishedImage],
    *,
    tasks: list[str],
    image_root: str = "",
    image_prefix: str | None = None,
    ls_masks: str = "polygon",
    val_fraction: float = 0.0,
    review: Collection[str] = DEFAULT_OUTPUTS_REVIEW,
    polygon_tolerance: float = DEFAULT_TOLERANCE_PX,
) -> int:
    """Write every format from the shard's finished images, in input order; returns how
    many images were written. On error nothing half-written is left in place of an output.

    `image_root`: the folder image names are relative to (formats.common.relative_name; the
    CLI passes image_root_of(all inputs) or --image-root); `image_prefix`: Label Studio URL
    prefix (None: local files); `ls_masks`: polygon | brush; `val_fraction`: YOLO val split;
    `review`: the review decisions YOLO and Label Studio take (COCO and the review queue take
    every label); `polygon_tolerance`: pixels, formats.polygons."""
    writers: list[OutputWriter] = []
    options = {"tasks": tasks, "image_root": image_root, "image_prefix": image_prefix,
               "ls_masks": ls_masks, "val_fraction": val_fraction, "review": review,
               "polygon_tolerance": polygon_tolerance}
    try:
        for name in formats:
            writers.append(WRITERS[name](out_dir, **options))
        writers.append(ReviewQueueWriter(out_dir))
        count = 0
        for image in map(FinishedImage._make, finished):  # plain 4-tuples are taken too
            for writer in writers:
                writer.add(image.number, image.image_id, image.path, image.response)
            count += 1
        for writer in writers:
            writer.close()
        return count
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
