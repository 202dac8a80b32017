"""A Label Studio project's labeling config, read as "which suite task fills which
control, under which label names".

- The image: the first `<Image>` tag (its `name` is every region's `to_name`; its `value`,
  e.g. `$image`, names the task data field holding the URL).
- `RectangleLabels` -> detect boxes (and face boxes when a label maps to "face");
  `PolygonLabels` -> segment as polygons, `BrushLabels` -> segment as brush RLE;
  `KeyPointLabels` -> person keypoints, or face landmarks when its labels name a face-only
  landmark (mouth_left / mouth_right) and no person-only point.
- A label maps to suite category (or keypoint) names by its `predicted_values`
  attribute (comma-separated) when present, else by its own `value`; case-insensitive.
  Suite labels without a matching project label are not returned (Label Studio would
  show them unlabelled).
- Per region (formats.labelstudio): a `perRegion` `<Choices>` offering the review decisions
  (auto_accept, needs_review, reject) gets each region's decision; a `perRegion`
  `<TextArea name="source">` the tasks that labelled its object. A project without them gets
  the regions alone.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from prelabel.core.labels import COCO_KEYPOINT_NAMES, FACE_LANDMARK_NAMES
from prelabel.core.tasks import TASKS, LabelKind, TaskSpec
from prelabel.formats.common import OBJECT_NAMES
from prelabel.formats.labelstudio import KEYPOINT_CONTROLS, PER_REGION_TYPES, REVIEW_CHOICES, SOURCE, Controls

MAX_CONFIG_BYTES = 1024 * 1024
#: Categories whose boxes only a keypoint task labels (faces: the detector has none).
_KEYPOINT_ONLY_CATEGORIES = {t.category for t in TASKS if t.keypoints is not None and t.category not in OBJECT_NAMES}
_FACE_ONLY = set(FACE_LANDMARK_NAMES) - set(COCO_KEYPOINT_NAMES)
_PERSON_ONLY = set(COCO_KEYPOINT_NAMES) - set(FACE_LANDMARK_NAMES)


class ConfigError(ValueError):
    """A labeling config this backend cannot serve."""


@dataclass
class Control:
    name: str
    kind: str  # rectangle | polygon | brush | keypoint | face_keypoint
    labels: dict[str, str] = field(default_factory=dict)  # suite name (lower case) -> project label


@dataclass
class Project:
    image: str  # the Image tag's name
    image_field: str  # task data key of the image URL
    controls: dict[str, Control]
    review: str = ""  # the per-region Choices of review decisions ("" where none)
    source: str = ""  # the per-region TextArea of the labels' sources ("" where none)

    def control(self, kind: str) -> Control | None:
        return next((c for c in self.controls.values() if c.kind == kind), None)

    @property
    def tasks(self) -> list[str]:
        """The suite tasks whose labels some control takes, in registry order."""
        kinds = {c.kind for c in self.controls.values()}
        rect = self.control("rectangle")
        rect_labels = set(rect.labels) if rect is not None else set()

        def fills(task: TaskSpec) -> bool:
            if task.kind is LabelKind.BOX:
                return bool(rect_labels - _KEYPOINT_ONLY_CATEGORIES)
            if task.kind is LabelKind.MASK:
                return bool(kinds & {"polygon", "brush"})
            # A keypoint task: its points' control, or rectangles of its category when only
            # it labels those (face boxes).
            return KEYPOINT_CONTROLS[task.name] in kinds or (
                task.category in _KEYPOINT_ONLY_CATEGORIES and task.category in rect_labels)

        return [t.name for t in TASKS if fills(t)]

    @property
    def masks(self) -> str:
        return "brush" if self.control("brush") is not None and self.control("polygon") is None else "polygon"

    def region_controls(self) -> Controls:
        """Control names for formats.labelstudio.results_of ("" where the project has none)."""
        def name(kind: str) -> str:
            c = self.control(kind)
            return c.name if c is not None else ""

        return Controls(image=self.image, rectangle=name("rectangle"), polygon=name("polygon"),
                        brush=name("brush"), keypoint=name("keypoint"), face_keypoint=name("face_keypoint"),
                        review=self.review, source=self.source)


_KIND_OF_TAG = {"rectanglelabels": "rectangle", "polygonlabels": "polygon", "brushlabels": "brush",
                "keypointlabels": "keypoint"}


def parse_config(xml: str) -> Project:
    if len(xml.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise ConfigError("labeling config too large")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ConfigError(f"labeling config is not XML: {exc}") from None
    image = next((el for el in root.iter() if el.tag.lower() == "image"), None)
    image_name = image.get("name") if image is not None else None
    if image is None or not image_name:
        raise ConfigError("labeling config has no <Image name=...>")
    image_field = (image.get("value") or "$image").lstrip("$")
    controls: dict[str, Control] = {}
    review = source = ""
    for el in root.iter():
        kind = _KIND_OF_TAG.get(el.tag.lower())
        name = el.get("name")
        if el.get("perRegion") == "true" and el.get("toName") == image_name and name:
            if el.tag.lower() == "choices" and not review and \
                    set(REVIEW_CHOICES) <= {c.get("value") for c in el if c.tag.lower() == "choice"}:
                review = name
            elif el.tag.lower() == "textarea" and name == SOURCE:
                source = name
        if kind is None or el.get("toName") != image_name or not name:
            continue
        labels: dict[str, str] = {}
        for lab in el:
            value = lab.get("value")
            if lab.tag.lower() != "label" or not value:
                continue
            for suite_name in (lab.get("predicted_values") or value).split(","):
                if suite_name.strip():
                    labels.setdefault(suite_name.strip().lower(), value)
        if kind == "keypoint" and set(labels) & _FACE_ONLY and not set(labels) & _PERSON_ONLY:
            kind = "face_keypoint"
        if any(c.kind == kind for c in controls.values()):
            continue  # one control per kind: the first
        controls[name] = Control(name, kind, labels)
    if not controls:
        raise ConfigError("labeling config has no RectangleLabels, PolygonLabels, BrushLabels or "
                          "KeyPointLabels on its image")
    return Project(image_name, image_field, controls, review, source)


def relabel(regions: list[dict], project: Project, score_threshold: float = 0.0) -> list[dict]:
    """Regions (formats.labelstudio.results_of with project.region_controls()) renamed to
    the project's labels; regions the project has no control or label for are dropped,
    and keypoints whose parent box was dropped lose the link."""
    out = []
    per_region = []  # review / source results: kept with their region
    for region in regions:
        if region["type"] in PER_REGION_TYPES:
            if region["from_name"] and region["from_name"] in (project.review, project.source):
                per_region.append(region)
            continue
        control = project.controls.get(region["from_name"])
        if control is None or region.get("score", 1.0) < score_threshold:
            continue
        key = region["type"]
        (suite_name,) = region["value"][key]
        label = control.labels.get(suite_name.lower())
        if label is None:
            continue
        region = {**region, "value": {**region["value"], key: [label]}}
        out.append(region)
    kept = {r["id"] for r in out}
    for region in out:
        if "parentID" in region and region["parentID"] not in kept:
            region.pop("parentID")
    return out + [r for r in per_region if r["id"] in kept]
