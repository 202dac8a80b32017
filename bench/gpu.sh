#!/usr/bin/env bash
# GPU bench: run from a copy of the repository on one H100-class GPU machine with no
# network. Installs what is missing from the wheels carried in bench/wheels/ (fetch
# them beforehand, where PyPI is reachable: `bash bench/fetch_wheels.sh`), checks the
# machine, then runs `python -m bench.gpu` under a hard time limit (about 5 minutes
# in all on an H100). Results: bench/results/gpu.{json,md}.
#
#   bash bench/gpu.sh                 # the real run (tritonserver --model-config-name=gpu)
#   bash bench/gpu.sh --profile cpu   # dry run of every step on a CPU machine
#
# Environment: PYTHON (default python3), BENCH_WHEELS (bench/wheels), BENCH_VENV (the
# overlay virtualenvs' prefix, default /tmp/prelabel-bench), BENCH_OUT (bench/results),
# BENCH_TIME_LIMIT_S (hard limit for the Python part, default 420).
#
# Nothing of the machine's own Python environment is changed: carried packages go to
# an overlay virtualenv layered on top of it (a .pth adds the machine's site-packages
# after its own). Triton's Python-backend stub finds its packages through the `python3`
# first on PATH (it does not read PYTHONPATH); the launcher puts the bench's interpreter
# first, and BENCH_STUB_PYTHON (bench/servers.py) an interpreter for the stub alone.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
WHEELS=${BENCH_WHEELS:-bench/wheels}
VENV=${BENCH_VENV:-/tmp/prelabel-bench}
OUT=${BENCH_OUT:-bench/results}
LIMIT=${BENCH_TIME_LIMIT_S:-420}
PROFILE=gpu
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) PROFILE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "usage: bench/gpu.sh [--profile gpu|cpu] [--out DIR]" >&2; exit 2 ;;
  esac
done
START=$(date +%s)
log() { echo "[gpu.sh +$(( $(date +%s) - START ))s] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export PRELABEL_ALLOW_RANDOM_WEIGHTS=1   # the GPU coco model has no downloadable weights
export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
PYVER=$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")') || die "no $PY"
PYTAG="cp${PYVER/./}"
log "python: $($PY -c 'import sys; print(sys.executable, sys.version.split()[0])')"

# Wheels in $WHEELS usable by this Python (pure, abi3, or built for it), by glob.
usable_wheels() {
  for w in "$WHEELS"/$1; do
    [[ -e "$w" ]] || continue
    name=$(basename "$w")
    if [[ "$name" =~ -cp[0-9]+-cp[0-9]+[a-z]*- && ! "$name" =~ -${PYTAG}-${PYTAG} ]]; then
      log "skipping $name: built for another Python than $PYVER"
      continue
    fi
    echo "$w"
  done
}

# An overlay virtualenv at $1 holding wheels $3..., on top of the site-packages of
# interpreter $2. Prints nothing; the overlay's python is $1/bin/python.
overlay() {
  local dest=$1 base=$2; shift 2
  rm -rf "$dest"
  $PY -m venv --without-pip "$dest" 2>"$dest.err" || return 1
  local site
  site=$("$dest/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$base" - "$site/zz_prelabel_base.pth" <<'PY'
import sys
dirs = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
with open(sys.argv[1], "w") as f:
    f.write("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n")
PY
  if [[ $# -gt 0 ]]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
        --target "$site" "$@" || return 1
  fi
}

# -- 1. Python packages -------------------------------------------------------------
check_imports() {
  "$1" - <<'PY'
import importlib.util
import torch, torchvision, numpy, PIL, prometheus_client  # preinstalled on the GPU machine
import grpc, google.protobuf
import tritonclient.grpc.aio, pydantic_settings, facenet_pytorch
import grpc_health.v1.health_pb2_grpc, grpc_reflection.v1alpha.reflection, grpc_status.rpc_status
import prelabel.v1.detection_pb2_grpc, prelabel.v1.prelabel_pb2_grpc  # gencode checks grpcio/protobuf versions
assert importlib.util.find_spec("pytriton") is not None, "nvidia-pytriton is not installed"
print("imports ok: grpcio", grpc.__version__, "protobuf", google.protobuf.__version__, "numpy", numpy.__version__,
      "torch", torch.__version__)
PY
}
if check_imports "$PY" 2>/tmp/prelabel-bench-imports.err; then
  log "every package already importable: nothing to install"
else
  log "missing packages ($(tail -1 /tmp/prelabel-bench-imports.err)); installing from $WHEELS"
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || die "no wheels in $WHEELS: run 'bash bench/fetch_wheels.sh $PYVER' where PyPI is reachable"
  $PY -c 'import lzma' 2>/dev/null || die "this Python has no lzma module: fetch the wheels with SLIM=0"
  mapfile -t todo < <(usable_wheels '*.whl' | grep -v '/numpy-')
  if overlay "$VENV-venv" "$PY" "${todo[@]}"; then
    PY="$VENV-venv/bin/python"
    log "overlay virtualenv $VENV-venv: ${#todo[@]} carried wheels on top of the machine's packages"
  else
    log "cannot make an overlay virtualenv ($(tail -1 "$VENV-venv.err" 2>/dev/null)); installing into $PY's environment"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
        "${todo[@]}" || die "pip install of the carried wheels failed"
  fi
  check_imports "$PY" || die "packages still missing after installing the carried wheels (see above)"
fi

# numpy 2 breaks the Python-backend stub of nvidia-pytriton 0.7.0 (empty output tensors):
# give the model processes numpy 1.26 (a second overlay, first on their PATH).
if [[ $($PY -c 'import numpy; print(numpy.__version__.split(".")[0])') -ge 2 ]]; then
  mapfile -t np1 < <(usable_wheels 'numpy-1.*.whl')
  [[ ${#np1[@]} -gt 0 ]] || die "numpy $($PY -c 'import numpy; print(numpy.__version__)') here and no numpy 1.x wheel for Python $PYVER in $WHEELS: the Python-backend stub of nvidia-pytriton 0.7.0 returns empty outputs under numpy 2 (fetch_wheels.sh carries numpy 1.26)"
  overlay "$VENV-stub" "$PY" "${np1[0]}" || die "could not make the stub's overlay virtualenv"
  "$VENV-stub/bin/python" -c '
import numpy, torch
assert numpy.__version__.startswith("1."), numpy.__version__
assert torch.from_numpy(numpy.ones(3, numpy.uint8)).sum().item() == 3
import facenet_pytorch, pydantic_settings
print("stub python ok: numpy", numpy.__version__, "torch", torch.__version__)' >&2 \
    || die "the stub's interpreter (numpy 1.x under this torch) does not work"
  export BENCH_STUB_PYTHON="$VENV-stub/bin/python3"
fi

# -- 2. The machine -----------------------------------------------------------------
if [[ "$PROFILE" == gpu ]]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2
  $PY -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"; print("torch cuda:", torch.cuda.get_device_name(0))' >&2 \
    || die "torch cannot use the GPU"
  if ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1'; then
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
      if [[ -e $d/libcuda.so.1 ]]; then export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; log "libcuda from $d"; break; fi
    done
  fi
fi
PYTRITON=$($PY -c 'import importlib.util, pathlib; print(pathlib.Path(list(importlib.util.find_spec("pytriton").submodule_search_locations)[0]))')
STUB="$PYTRITON/tritonserver/python_backend_stubs/$PYVER/triton_python_backend_stub"
[[ -x "$STUB" ]] || die "no Python-backend stub for Python $PYVER in $PYTRITON"
LIBS="$(dirname "$PYTRITON")/nvidia_pytriton.libs"
# The stub links libpython$PYVER.so.1.0: make sure the loader finds it.
if LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$STUB" | grep -q "libpython.*not found"; then
  found=""
  for d in "$($PY -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')" \
           "$($PY -c 'import sys; print(sys.base_prefix)')/lib" /usr/lib/x86_64-linux-gnu /usr/local/lib /usr/lib; do
    [[ -n "$d" && -e "$d/libpython$PYVER.so.1.0" ]] && { found=$d; break; }
  done
  if [[ -z "$found" ]]; then
    hit=$(timeout 30 find / -xdev \( -name "libpython$PYVER.so.1.0" -o -name "libpython$PYVER.so" \) 2>/dev/null | head -1)
    if [[ -n "$hit" ]]; then
      found=$VENV-libpython; mkdir -p "$found"
      ln -sf "$hit" "$found/libpython$PYVER.so.1.0"
    fi
  fi
  [[ -n "$found" ]] || die "libpython$PYVER.so.1.0 not found: the Python-backend stub needs a shared libpython (install libpython$PYVER)"
  export LD_LIBRARY_PATH="$found${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  log "libpython$PYVER from $found"
fi
missing=$(LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$STUB" | grep "not found" || true)
[[ -z "$missing" ]] || die "the stub misses libraries: $missing"
# The Python backend moves tensors through /dev/shm: batches of 16 x 640x640x3 need room.
shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
if [[ -n "$shm_kb" && "$shm_kb" -lt 4000000 ]]; then
  log "/dev/shm has only $((shm_kb / 1024)) MiB free; trying to grow it"
  mount -o remount,size=16G /dev/shm 2>/dev/null || log "could not grow /dev/shm (not root?): large batches may fail"
fi

# -- 3. The bench -------------------------------------------------------------------
log "running python -m bench.gpu --profile $PROFILE (hard limit ${LIMIT}s)"
timeout -k 30 "$LIMIT" "$PY" -m bench.gpu --profile "$PROFILE" --out "$OUT"
rc=$?
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
  log "stopped at the ${LIMIT}s limit: partial results in $OUT/gpu.json"
fi
log "done (exit $rc)"
exit $rc
