"""Triton entry point; the implementation lives in services/modelkit (installed in the
Triton image and the embedded server's virtualenv)."""
from services.modelkit.coco_detector import CocoDetector as TritonPythonModel  # noqa: F401
