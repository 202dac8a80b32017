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

COPY requirements.txt pyproject.toml README.md LICENSE ./
COPY protos/ protos/
COPY prelabel/ prelabel/
COPY services/ services/
# The client, the shared core and the servers (the `server` extra: no torch, no model
# runtimes -- those live in the Triton image), at the versions requirements.txt pins;
# also the `prelabel` console script for the bulk Indexed Job.
RUN pip install -c requirements.txt ".[server,quality]" \
 && rm -rf build ./*.egg-info

RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin prelabel
USER 10001:10001

EXPOSE 50051 50052 50053 50054 9091 9092 9093 9094
CMD ["python", "-m", "services.router"]
