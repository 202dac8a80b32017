# syntax=docker/dockerfile:1
# One image for the four gRPC processes and the `prelabel` CLI (bulk Indexed Job).
# The Deployment picks the process: python -m services.{router,detection,segmentation,keypoints}
# Build from the repository root:
#   docker build -f docker/service.Dockerfile -t prelabel/service:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

WORKDIR /app

COPY requirements.txt ./
# facenet-pytorch's metadata pins an old torch: install it without its dependencies.
RUN pip install -r requirements.txt \
 && pip install --no-deps facenet-pytorch==2.6.0

COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY prelabel/ prelabel/
COPY services/ services/
# Installs the packages and the `prelabel` console script.
RUN pip install --no-deps . \
 && rm -rf build ./*.egg-info

RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin prelabel
USER 10001:10001

EXPOSE 50051 50052 50053 50054 9091 9092 9093 9094
CMD ["python", "-m", "services.router"]
