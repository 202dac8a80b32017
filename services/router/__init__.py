"""Router (prelabel.v1.PreLabeler): fans one image out to the detection,
segmentation and keypoint services and merges their answers."""
