"""Triton entry point; the implementation lives in services/modelkit (installed in the
Triton image and the embedded server's virtualenv)."""
from services.modelkit.face_detector import FaceDetector as TritonPythonModel  # noqa: F401
