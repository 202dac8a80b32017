"""Triton entry point. The implementation (chosen by the config's `implementation`
parameter) lives in services/modelkit, installed in the Triton image and the embedded
server's virtualenv."""
from services.modelkit.entrypoint import TritonPythonModel  # noqa: F401
