"""Code that runs inside Triton's Python backend (the `model.py` files in
model_repository/ import from here). Keep it free of gRPC/service imports: the
Triton image installs only what the models need."""
