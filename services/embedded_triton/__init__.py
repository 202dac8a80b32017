"""Embedded CPU Triton: runs the real `tritonserver` binary from the nvidia-pytriton
wheel against model_repository/ on loopback (development, CI, `make run`)."""
