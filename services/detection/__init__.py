"""Detection service (prelabel.v1.Detector): draft boxes from Triton detectors."""
