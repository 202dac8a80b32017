"""The end-of-run summary `prelabel annotate` prints: what the shard holds (images labelled
now and before, rejected, failed), its labels per task and review decision, how many went
into the train-ready outputs, the time taken and where the outputs are."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field

from prelabel.core.review import DECISION_NAMES
from prelabel.core.tasks import TASK_NAMES
from prelabel.formats.common import output_labels

#: The files and folders of each --formats name, relative to DIR.
FORMAT_PATHS = {"coco": ["coco/", "cvat_labels.json"], "yolo": ["yolo/"],
                "labelstudio": ["labelstudio.json", "labelstudio.xml"]}
_COLUMNS = [name for name in DECISION_NAMES.values() if name != "unspecified"]


@dataclass
class LabelCounts:
    """Labels of the shard's finished images: every one (by task and review decision, as the
    journal and the COCO files hold them) and those the --outputs-review filter lets into
    YOLO and Label Studio."""

    review: Collection[str]
    by_task: Counter = field(default_factory=Counter)  # (task, decision name) -> labels
    train_ready: int = 0

    def counting(self, finished: Iterable) -> Iterator:
        """Pass `finished` (formats.FinishedImage rows) through, counting their labels."""
        for row in finished:
            response = row[3]
            for label in output_labels(response):
                self.by_task[label.task.name, label.review] += 1
            self.train_ready += sum(1 for _ in output_labels(response, self.review))
            yield row

    @property
    def total(self) -> int:
        return sum(self.by_task.values())

    def table(self) -> list[str]:
        columns = _COLUMNS + (["unspecified"] if any(r == "unspecified" for _, r in self.by_task) else [])
        tasks = [t for t in TASK_NAMES if any(task == t for task, _ in self.by_task)]
        lines = [f"  {'task':<10}" + "".join(f"{c:>14}" for c in columns) + f"{'total':>10}"]
        for task in tasks:
            row = [self.by_task[task, c] for c in columns]
            lines.append(f"  {task:<10}" + "".join(f"{n:>14}" for n in row) + f"{sum(row):>10}")
        return lines


@dataclass(frozen=True)
class RunSummary:
    out_dir: str
    images: int  # in the shard
    labelled_now: int
    labelled_before: int
    rejected: int  # images refused for good (failures.jsonl)
    not_labelled: int  # images still to do (failures.jsonl)
    seconds: float
    formats: list[str]
    counts: LabelCounts | None  # None: the outputs were not written

    def text(self) -> str:
        state = "complete" if self.counts is not None else "NOT complete (run again to finish it)"
        lines = [f"prelabel annotate: {self.out_dir} {state}, {self.seconds:.1f} s",
                 f"images: {self.images} in the shard; {self.labelled_now} labelled in this run, "
                 f"{self.labelled_before} before; {self.rejected} rejected, {self.not_labelled} not labelled"
                 + (" (see failures.jsonl)" if self.rejected or self.not_labelled else "")]
        if self.counts is None:
            lines.append("outputs: not written")
            return "\n".join(lines) + "\n"
        c = self.counts
        lines.append(f"labels: {c.total} in COCO (every review decision); {c.train_ready} in YOLO and Label Studio "
                     f"(--outputs-review {','.join(c.review)})")
        if c.total:
            lines += c.table()
        paths = [p for name in self.formats for p in FORMAT_PATHS[name]] + ["review_queue.jsonl"]
        lines.append("outputs: " + " ".join(os.path.join(self.out_dir, p) for p in paths))
        return "\n".join(lines) + "\n"
