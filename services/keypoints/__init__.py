"""Keypoint service (prelabel.v1.KeypointDetector): COCO person keypoints and facial landmarks."""
