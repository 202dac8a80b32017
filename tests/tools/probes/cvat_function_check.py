"""Run prelabel.cvat_function through cvat_sdk's own checks, as `cvat-cli task auto-annotate`
does (its annotation mapper validates every shape against the function's spec and the
task's labels), against a router; print what came back.

    python cvat_function_check.py ROUTER IMAGE   (run with the cvat tool venv)
"""
import json
import logging
import sys
from types import SimpleNamespace

import PIL.Image
from cvat_sdk.auto_annotation import DetectionFunctionSpec
from cvat_sdk.auto_annotation.driver import _AnnotationMapper, _DetectionFunctionContextImpl

from prelabel import cvat_function

router, image_path = sys.argv[1], sys.argv[2]
TASK_LABEL_TYPE = {"rectangle": "rectangle", "mask": "mask", "any": "any", "skeleton": "skeleton"}


def task_labels(spec: DetectionFunctionSpec, polygons: bool):
    """The labels a CVAT task made for this function would have (ids of its own)."""
    labels = []
    for i, label in enumerate(spec.labels):
        kind = getattr(label, "type", "any")
        kind = "polygon" if polygons and kind == "mask" else kind
        sublabels = [SimpleNamespace(id=500 + j, name=sl.name, type="points", attributes=[])
                     for j, sl in enumerate(getattr(label, "sublabels", []))]
        labels.append(SimpleNamespace(id=100 + i, name=label.name, type=kind, sublabels=sublabels, attributes=[]))
    return labels


out = {}
image = PIL.Image.open(image_path)
for tasks, polygons in (("detect", False), ("segment", False), ("segment", True), ("detect,segment", False),
                        ("keypoints", False), ("faces", False)):
    fn = cvat_function.create(router=router, tasks=tasks)
    assert isinstance(fn.spec, DetectionFunctionSpec)
    mapper = _AnnotationMapper(logging.getLogger("check"), fn.spec.labels, task_labels(fn.spec, polygons),
                               allow_unmatched_labels=False, conv_mask_to_poly=polygons)
    context = _DetectionFunctionContextImpl(frame_name="a/one.png", conf_threshold=0.5, conv_mask_to_poly=polygons)
    shapes = fn.detect(context, image)
    _, remapped = mapper.validate_and_remap(shapes, 7)
    key = f"{tasks}{'+poly' if polygons else ''}"
    out[key] = [{"type": s.type.value, "label_id": s.label_id, "frame": s.frame, "score": s.score,
                 "points": len(getattr(s, "points", None) or []),
                 "elements": [{"outside": getattr(e, "outside", False), "occluded": getattr(e, "occluded", False)}
                              for e in getattr(s, "elements", None) or []]}
                for s in remapped]
print(json.dumps(out))
