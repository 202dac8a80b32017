"""Triton entry point; the implementation lives in services/modelkit (installed in the
Triton image and the embedded server's virtualenv)."""
from services.modelkit.keypointer import Keypointer as TritonPythonModel  # noqa: F401
