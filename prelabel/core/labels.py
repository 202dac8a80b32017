"""Label maps, keyed by the `label_map` parameter of each Triton model config."""
from __future__ import annotations

import json
from collections.abc import Mapping

#: The category of every person (COCO id 1) and of every face (the face detector's only one).
PERSON = "person"
FACE = "face"

# COCO 2017 category ids -> names (the 80 used ids of the original 1..90 range;
# torchvision COCO detectors emit these ids directly).
COCO_CATEGORIES: dict[int, str] = {
    1: PERSON, 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus",
    7: "train", 8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant",
    13: "stop sign", 14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog",
    19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra",
    25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie",
    33: "suitcase", 34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball",
    38: "kite", 39: "baseball bat", 40: "baseball glove", 41: "skateboard",
    42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass", 47: "cup",
    48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog",
    59: "pizza", 60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant",
    65: "bed", 67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse",
    75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven",
    80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}

FACE_CATEGORIES: dict[int, str] = {1: FACE}

LABEL_MAPS: dict[str, dict[int, str]] = {"coco": COCO_CATEGORIES, "face": FACE_CATEGORIES}

# COCO person keypoints: names in model output order and the COCO skeleton
# (1-based index pairs, exactly as in person_keypoints_*.json).
COCO_KEYPOINT_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
]
COCO_SKELETON = [
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
]
#: COCO's OKS sigmas of the person keypoints (pycocotools' defaults), in the order above.
COCO_KEYPOINT_SIGMAS = tuple(s / 10.0 for s in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                                                  1.07, 1.07, .87, .87, .89, .89))
FACE_LANDMARK_NAMES = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
#: Face skeleton (1-based, over the landmarks above): eyes joined, each eye to the nose, the
#: nose to each mouth corner, the mouth corners joined. CVAT builds its skeleton label from it.
FACE_SKELETON = [(1, 2), (1, 3), (2, 3), (3, 4), (3, 5), (4, 5)]
#: OKS sigmas of the face landmarks. There is no published set for these 5 points:
#: COCO-WholeBody's face sigmas are 0.007-0.035, and each of these takes 0.025, the sigma
#: COCO gives a person's eyes, which on a face box (a much smaller area than a person's) is
#: a tolerance of a few percent of the face size.
FACE_LANDMARK_SIGMAS = (0.025,) * len(FACE_LANDMARK_NAMES)


#: A config's `label_map` when the config carries its own vocabulary (a user's model): its
#: `names` parameter, a JSON list, names category ids 1..len(names) in order.
CUSTOM_LABEL_MAP = "custom"

#: A label map: the name of one of LABEL_MAPS, or the categories themselves (custom).
LabelMap = str | Mapping[int, str]


def custom_categories(names_json: str) -> dict[int, str]:
    """The categories of a `names` parameter (a JSON list of strings): ids 1..N (0 stays
    "unknown", as in the prompt tensors). ValueError when it is not such a list."""
    names = json.loads(names_json) if names_json else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"names must be a JSON list of non-empty strings, got {names_json[:80]!r}")
    if len(set(names)) != len(names):
        raise ValueError("names must be distinct")
    return {i + 1: n for i, n in enumerate(names)}


def categories(label_map: LabelMap) -> Mapping[int, str]:
    return LABEL_MAPS.get(label_map, {}) if isinstance(label_map, str) else label_map


def category_name(label_map: LabelMap, category_id: int) -> str:
    return categories(label_map).get(category_id, f"class_{category_id}")
