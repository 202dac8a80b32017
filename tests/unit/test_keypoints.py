"""Keypoint visibility, request thresholds and the keypoint schemas."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prelabel.core.errors import InvalidArgument
from prelabel.v1 import keypoints_pb2
from services.common.keypoints import (
    COCO_PERSON_SCHEMA,
    FACE_SCHEMA,
    KeypointThresholds,
    make_keypoints,
    thresholds_from_request,
    visibility,
)

# Copied from COCO's person_keypoints_val2017.json (categories[0]), independently of
# prelabel/core/labels.py.
COCO_JSON_KEYPOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
COCO_JSON_SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
    [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]


@pytest.mark.parametrize(("score", "expected"), [
    (0.9, 2), (0.5, 2), (0.4999, 1), (0.2, 1), (0.1999, 0), (0.0, 0), (1.0, 2),
])
def test_visibility_follows_the_thresholds_when_scores_sit_on_and_around_them(score, expected):
    assert visibility(score, KeypointThresholds(visible=0.5, labeled=0.2)) == expected


@given(score=st.floats(0, 1), a=st.floats(0, 1), b=st.floats(0, 1))
def test_visibility_is_monotone_in_the_score_when_thresholds_vary(score, a, b):
    t = KeypointThresholds(visible=max(a, b), labeled=min(a, b))
    flag = visibility(score, t)
    assert flag == (2 if score >= t.visible else 1 if score >= t.labeled else 0)
    assert visibility(min(1.0, score + 0.1), t) >= flag


def test_visibility_never_gives_one_when_both_thresholds_are_equal():
    t = KeypointThresholds(visible=0.3, labeled=0.3)
    assert [visibility(s, t) for s in (0.29, 0.3, 0.31)] == [0, 2, 2]


def test_keypoint_thresholds_refuse_labeled_above_visible_when_built_directly():
    with pytest.raises(ValueError):
        KeypointThresholds(visible=0.3, labeled=0.4)


def test_make_keypoints_drops_the_position_when_a_point_is_not_labeled():
    names = ["a", "b", "c"]
    points = np.array([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]])
    kps = make_keypoints(names, points, np.array([0.9, 0.3, 0.1]), KeypointThresholds())
    assert [k.name for k in kps] == names
    assert [k.visibility for k in kps] == [2, 1, 0]
    assert [(k.x, k.y) for k in kps] == [(10.0, 20.0), (30.0, 40.0), (0.0, 0.0)]
    assert [round(k.score, 6) for k in kps] == [0.9, 0.3, 0.1]


def test_thresholds_from_request_use_defaults_when_fields_are_unset():
    t = thresholds_from_request(keypoints_pb2.KeypointRequest())
    assert (t.visible, t.labeled) == (0.5, 0.2)


def test_thresholds_from_request_accept_custom_values_when_ordered():
    t = thresholds_from_request(keypoints_pb2.KeypointRequest(visible_threshold=0.8, labeled_threshold=0.0))
    assert (t.visible, t.labeled) == (pytest.approx(0.8), 0.0)


@pytest.mark.parametrize(("request_fields", "field"), [
    ({"visible_threshold": 1.5}, "visible_threshold"),
    ({"visible_threshold": -0.1}, "visible_threshold"),
    ({"visible_threshold": float("nan")}, "visible_threshold"),
    ({"labeled_threshold": 2.0}, "labeled_threshold"),
    ({"labeled_threshold": 0.7}, "labeled_threshold"),  # above the default visible 0.5
    ({"visible_threshold": 0.1}, "visible_threshold"),  # below the default labeled 0.2
    ({"visible_threshold": 0.4, "labeled_threshold": 0.6}, "labeled_threshold"),
])
def test_thresholds_from_request_name_the_field_when_values_are_invalid(request_fields, field):
    with pytest.raises(InvalidArgument) as exc:
        thresholds_from_request(keypoints_pb2.KeypointRequest(**request_fields))
    assert exc.value.field == field


def test_coco_person_schema_matches_coco_json_when_compared_name_by_name():
    assert COCO_PERSON_SCHEMA.name == "coco_person_17"
    assert list(COCO_PERSON_SCHEMA.keypoint_names) == COCO_JSON_KEYPOINTS
    pairs = list(COCO_PERSON_SCHEMA.skeleton)
    assert [pairs[i:i + 2] for i in range(0, len(pairs), 2)] == COCO_JSON_SKELETON


def test_face_schema_lists_the_five_mtcnn_landmarks_when_built():
    assert FACE_SCHEMA.name == "face_5"
    assert list(FACE_SCHEMA.keypoint_names) == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    assert list(FACE_SCHEMA.skeleton) == []
