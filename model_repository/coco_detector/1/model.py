"""Triton entry point. The implementation is named by import path in the config's
`implementation` parameter (services/modelkit, installed in the Triton image and the
embedded server's virtualenv, or a module in this model folder)."""
from services.modelkit.entrypoint import TritonPythonModel  # noqa: F401
