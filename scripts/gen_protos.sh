#!/usr/bin/env bash
# Generates prelabel/v1/*_pb2*.py from protos/prelabel/v1/*.proto. The output lands in
# the package path that matches the proto package, so `import prelabel.v1.x_pb2` works
# as is (no import rewriting). Deterministic: CI regenerates and fails on any diff.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
# google/rpc/*.proto (imported for google.rpc.Code) ship with googleapis-common-protos,
# whose google.rpc package the generated code imports at run time.
GOOGLEAPIS=$("$PY" -c 'import pathlib, google.rpc.code_pb2 as m; print(pathlib.Path(m.__file__).parents[2])')
rm -f prelabel/v1/*_pb2.py prelabel/v1/*_pb2.pyi prelabel/v1/*_pb2_grpc.py
"$PY" -m grpc_tools.protoc -I protos -I "$GOOGLEAPIS" \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  protos/prelabel/v1/*.proto
