"""Output formats of a bulk run, each written from the journal at the end of a shard.

`write_outputs` feeds every finished image, in input order, to one writer per format and
to the review queue; each writer makes its output appear atomically when closed.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

from prelabel.formats.coco import CocoWriter
from prelabel.formats.common import OutputWriter
from prelabel.formats.labelstudio import LabelStudioWriter
from prelabel.formats.review_queue import ReviewQueueWriter
from prelabel.formats.yolo import YoloWriter
from prelabel.v1 import prelabel_pb2

#: --formats name -> writer. The review queue is always written.
WRITERS = {"coco": CocoWriter, "yolo": YoloWriter, "labelstudio": LabelStudioWriter}


def write_outputs(
    out_dir: str | os.PathLike,
    formats: Iterable[str],
    finished: Iterable[tuple[int, str, str, prelabel_pb2.PreLabelResponse]],
    *,
    tasks: list[str],
    image_prefix: str = "",
) -> int:
    """Write every format from `(number, image_id, path, response)` tuples; returns how many
    images were written. On error nothing half-written is left in place of an output."""
    writers: list[OutputWriter] = []
    try:
        for name in formats:
            writers.append(WRITERS[name](out_dir, tasks=tasks, image_prefix=image_prefix))
        writers.append(ReviewQueueWriter(out_dir))
        count = 0
        for number, image_id, path, response in finished:
            for writer in writers:
                writer.add(number, image_id, path, response)
            count += 1
        for writer in writers:
            writer.close()
        return count
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
