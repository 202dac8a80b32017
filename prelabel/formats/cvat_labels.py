"""CVAT labels for the COCO files: `DIR/cvat_labels.json`, written with the COCO output, so
a CVAT project or task gets every label the COCO files name before they are imported
(project/task *Labels -> Raw*: paste the file; REST API and cvat_sdk: the list is the
`labels` of a project or task create request, each entry a `PatchedLabelRequest`).

What CVAT requires, and why the entries are what they are (CVAT's LabelSerializer and
models.Label, cvat-ui's raw labels editor and skeleton configurator, cvat-core's Label,
the dataset manager's COCO importers):

- Every label: `name` (1-64 characters), `type` (one of CVAT's label types) and
  `attributes` (a list): the Raw editor rejects a label without either. No `id` (CVAT
  assigns them) and no `color` (CVAT picks distinct ones).
- Box and mask categories are type "any": one CVAT label carries a name for both COCO 1.0
  files (rectangles from instances_detect.json, masks from instances_segment.json, or
  polygons when the import's "Convert masks to polygons" is on); it is the only type every
  importer and `prelabel.cvat_function` output fits ("rectangle", "polygon" or "mask" would
  refuse the others), and it keeps the list the same whatever the run holds, as the COCO
  categories are.
- Keypoint tasks get a "skeleton" label named like the COCO keypoint category (`person`,
  `face`) with one "points" sublabel per keypoint, named and ordered as the category's
  `keypoints` (CVAT's COCO Keypoints importer maps points to sublabels by name; its exporter
  orders them as the SVG's circles), and the `svg` CVAT draws the template with: one
  `<line x1 y1 x2 y2 data-type="edge" data-node-from="i" data-node-to="j">` per skeleton
  edge, then one `<circle r cx cy data-type="element node" data-element-id="i"
  data-node-id="i" data-label-name="NAME">` per keypoint, `i` its 1-based position (the
  COCO `skeleton` numbering), in a 100 x 100 box (the configurator's viewBox), no outer
  `<svg>`. The server swaps `data-label-name="NAME"` for the id of the sublabel it creates.
- Top-level label names are unique in a project or task, and a skeleton cannot take boxes:
  when a run has both boxes and person keypoints (both named `person`), the person skeleton
  goes to `cvat_labels_keypoints.json`, for a second project or task that takes
  person_keypoints_keypoints.json (as `prelabel.cvat_function` runs keypoints apart).
- Each top-level label has the attributes the COCO annotations carry (`review`: select of
  the review decisions, default `unspecified`; `model`: text), so CVAT's import keeps them.

CocoWriter writes these files from the categories of its own COCO files, so the names are
theirs. Each file appears whole (prelabel.atomic).
"""
from __future__ import annotations

import contextlib
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from prelabel.atomic import atomic_write_text
from prelabel.core.labels import FACE, PERSON
from prelabel.core.review import DECISION_NAMES
from prelabel.core.tasks import TASKS

FILE_NAME = "cvat_labels.json"
#: The tasks whose labels are CVAT skeletons.
KEYPOINT_TASKS = [t for t in TASKS if t.keypoints is not None]
BOX_TYPE = "any"
#: The attributes of every top-level label: the ones each COCO annotation carries.
ATTRIBUTES: list[dict[str, Any]] = [
    {"name": "review", "mutable": False, "input_type": "select", "default_value": "unspecified",
     "values": list(DECISION_NAMES.values())},
    {"name": "model", "mutable": False, "input_type": "text", "default_value": "", "values": [""]},
]
#: Where the skeleton template of a keypoint category draws each point (x, y in 0..100).
#: Person: the subject faces the viewer, so COCO's "left" is on the right; face: MTCNN's
#: "left" is as seen.
LAYOUTS: dict[str, dict[str, tuple[float, float]]] = {
    PERSON: {
        "nose": (50, 12), "left_eye": (54, 8), "right_eye": (46, 8), "left_ear": (58, 10), "right_ear": (42, 10),
        "left_shoulder": (62, 24), "right_shoulder": (38, 24), "left_elbow": (68, 40), "right_elbow": (32, 40),
        "left_wrist": (72, 55), "right_wrist": (28, 55), "left_hip": (58, 56), "right_hip": (42, 56),
        "left_knee": (59, 75), "right_knee": (41, 75), "left_ankle": (60, 93), "right_ankle": (40, 93),
    },
    FACE: {
        "left_eye": (35, 35), "right_eye": (65, 35), "nose": (50, 55), "mouth_left": (38, 75),
        "mouth_right": (62, 75),
    },
}


def _attributes() -> list[dict]:
    return [dict(a, values=list(a["values"])) for a in ATTRIBUTES]


def file_name(task: str | None = None) -> str:
    """FILE_NAME, or the file of a keypoint task's skeleton when its name is taken there."""
    return FILE_NAME if task is None else f"cvat_labels_{task}.json"


def _positions(category: str, names: Sequence[str]) -> list[tuple[float, float]]:
    """Template positions: the layout's for known names, a circle for the others."""
    layout = LAYOUTS.get(category, {})
    if all(n in layout for n in names):
        return [layout[n] for n in names]
    k = max(len(names), 1)
    return [(round(50 + 40 * math.sin(2 * math.pi * i / k), 2), round(50 - 40 * math.cos(2 * math.pi * i / k), 2))
            for i in range(len(names))]


def skeleton_svg(category: str, names: Sequence[str], edges: Sequence[Sequence[int]]) -> str:
    """CVAT's skeleton SVG: edges (1-based node ids, COCO `skeleton`), then one node per name."""
    xy = _positions(category, names)
    lines = [f'<line x1="{xy[a - 1][0]:g}" y1="{xy[a - 1][1]:g}" x2="{xy[b - 1][0]:g}" y2="{xy[b - 1][1]:g}" '
             f'data-type="edge" data-node-from="{a}" data-node-to="{b}"></line>'
             for a, b in (tuple(e) for e in edges) if 1 <= a <= len(names) and 1 <= b <= len(names) and a != b]
    circles = [f'<circle r="0.75" cx="{x:g}" cy="{y:g}" data-type="element node" data-element-id="{i}" '
               f'data-node-id="{i}" data-label-name="{html.escape(name, quote=True)}"></circle>'
               for i, (name, (x, y)) in enumerate(zip(names, xy, strict=False), 1)]
    return "\n".join(lines + circles)


def skeleton_label(category: Mapping) -> dict:
    """The skeleton label of a COCO keypoint category."""
    names = list(category["keypoints"])
    return {"name": category["name"], "type": "skeleton", "attributes": _attributes(),
            "sublabels": [{"name": n, "type": "points", "attributes": []} for n in names],
            "svg": skeleton_svg(category["name"], names, category["skeleton"])}


def label_files(categories: Mapping[str, Sequence[Mapping]]) -> dict[str, list[dict]]:
    """File name -> CVAT labels, from each task's COCO `categories` (by task name):
    FILE_NAME holds a label per box/mask category (detect's, then segment's others), then
    the skeletons of the keypoint tasks whose names are free there; a skeleton whose name
    is taken gets file_name(task)."""
    files: dict[str, list[dict]] = {FILE_NAME: []}
    taken: set[str] = set()
    for task in (t for t in TASKS if t.keypoints is None):
        for cat in categories.get(task.name, ()):
            if cat["name"] not in taken:
                files[FILE_NAME].append({"name": cat["name"], "type": BOX_TYPE, "attributes": _attributes()})
                taken.add(cat["name"])
    for task in KEYPOINT_TASKS:
        for cat in categories.get(task.name, ()):
            name = FILE_NAME if cat["name"] not in taken else file_name(task.name)
            files.setdefault(name, []).append(skeleton_label(cat))
            taken.add(cat["name"])
    return files


def write_label_files(out_dir: str, categories: Mapping[str, Sequence[Mapping]]) -> None:
    """Write label_files(categories) into `out_dir` (CocoWriter.close, from the categories
    of the COCO files it has just written), and remove a split file an earlier run left."""
    files = label_files(categories)
    for name, labels in files.items():
        atomic_write_text(os.path.join(out_dir, name), json.dumps(labels, indent=2, ensure_ascii=False) + "\n")
    for task in KEYPOINT_TASKS:
        if file_name(task.name) not in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(out_dir, file_name(task.name)))
