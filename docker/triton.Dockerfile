# syntax=docker/dockerfile:1
# NVIDIA Triton plus what the Python-backend models in model_repository/ need: torch,
# torchvision, pycocotools, Pillow, facenet-pytorch (MTCNN weights ship in the wheel) and
# the model code they import (services/modelkit). The repository is baked in at /models.
# Build from the repository root:
#   docker build -f docker/triton.Dockerfile -t prelabel/triton:0.1.0 .
FROM nvcr.io/nvidia/tritonserver:24.10-py3

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/opt/prelabel \
    HOME=/tmp

# Same pins as requirements.txt. The python-backend stub runs this image's python3 (3.10)
# with its site-packages. facenet-pytorch pins an old torch: install it --no-deps.
RUN python3 -m pip install \
      torch==2.14.1 torchvision==0.29.1 "numpy>=1.26,<2" "pycocotools>=2.0.8" \
      "Pillow>=10.3" "pydantic-settings>=2.3" requests tqdm \
 && python3 -m pip install --no-deps facenet-pytorch==2.6.0

# model_repository/*/1/model.py imports services.modelkit (and nothing else of services/).
COPY services/__init__.py /opt/prelabel/services/__init__.py
COPY services/modelkit/ /opt/prelabel/services/modelkit/
COPY model_repository/ /models/

RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin prelabel
USER 10001:10001

EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=none", "--allow-metrics=true"]
