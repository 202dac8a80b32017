"""Segmentation service (prelabel.v1.Segmenter): instance masks, automatic or box-prompted."""
