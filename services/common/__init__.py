"""Library shared by every prelabel process: image decoding and validation,
letterbox geometry, the Triton client, review routing, gRPC server bootstrap
(health, reflection, interceptors, metrics, settings, graceful shutdown)."""
