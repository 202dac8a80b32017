#!/usr/bin/env bash
# Download (here, with the package registry reachable) the wheels bench/gpu.sh installs
# on a GPU machine that has no network. They land in bench/wheels/ (git-ignored).
#
#   bash bench/fetch_wheels.sh [PYTHON_VERSION]     # default 3.12 (the lent GPU machines' python3)
#
# Assumed already on the GPU machine: torch, torchvision, numpy, Pillow, requests, tqdm,
# prometheus-client, typing-extensions (and grpcio/protobuf, though the versions the
# generated code needs are carried too). Carried: the rest of what the suite imports,
# plus numpy 1.26 for Triton's Python-backend stub alone: the stub in nvidia-pytriton
# 0.7.0 returns EMPTY output tensors under numpy 2.x (seen here with numpy 2.4.6), and
# GPU images ship numpy 2 (bench/gpu.sh gives numpy 1.26 to the model processes only).
# SLIM=1 (default): nvidia-pytriton loses its bundled libpython3.13 and the stubs of
# the other Python versions, and it and numpy are recompressed with LZMA (pip installs
# such wheels; ~2 minutes here): ~50 MB in all instead of ~85 MB, so the folder fits a
# 64 MiB transfer. SLIM=0 keeps the wheels as published.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${1:-3.12}
PYTAG=${PYVER/./}
DEST=${BENCH_WHEELS:-bench/wheels}
PIP=${PIP:-.venv/bin/python -m pip}
mkdir -p "$DEST"
rm -f "$DEST"/*.whl

# Versions: the ones the project's virtualenv uses (requirements*.txt resolved here).
WHEELS=(
  nvidia-pytriton==0.7.0
  tritonclient==2.73.0 python-rapidjson==1.25
  grpcio==1.85.1 protobuf==6.33.6 googleapis-common-protos==1.76.0
  grpcio-health-checking==1.81.1 grpcio-reflection==1.81.1 grpcio-status==1.85.1
  pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3
  annotated-types==0.8.0 typing-inspection==0.4.5 python-dotenv==1.2.4
  facenet-pytorch==2.6.0
  numpy==1.26.4
)
PLATFORMS=()
for p in manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 \
         manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
$PIP download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${PLATFORMS[@]}" -d "$DEST" "${WHEELS[@]}"

if [[ "${SLIM:-1}" == 1 ]]; then
  .venv/bin/python - "$DEST" "$PYVER" <<'PY'
import base64, hashlib, pathlib, sys, zipfile
dest, pyver = pathlib.Path(sys.argv[1]), sys.argv[2]


def repack(src: pathlib.Path, drop=lambda name: False) -> None:
    """Rewrite a wheel with LZMA members (and without the dropped ones), RECORD updated."""
    tmp = src.with_suffix(".slim")
    dropped = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as zout:
        records, record_name = [], None
        for info in zin.infolist():
            name = info.filename
            if name.endswith(".dist-info/RECORD"):
                record_name = name
                continue
            if drop(name):
                dropped += info.file_size
                continue
            data = zin.read(name)
            out = zipfile.ZipInfo(name, info.date_time)
            out.external_attr, out.compress_type = info.external_attr, zipfile.ZIP_LZMA
            zout.writestr(out, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{name},sha256={digest},{len(data)}")
        records.append(f"{record_name},,")
        out = zipfile.ZipInfo(record_name, (2024, 1, 1, 0, 0, 0))
        out.compress_type = zipfile.ZIP_LZMA
        zout.writestr(out, "\n".join(records) + "\n")
    before = src.stat().st_size
    tmp.replace(src)
    print(f"slimmed {src.name}: {before / 1e6:.1f} -> {src.stat().st_size / 1e6:.1f} MB"
          + (f" (dropped {dropped / 1e6:.0f} MB uncompressed)" if dropped else ""))


repack(next(dest.glob("nvidia_pytriton-*.whl")), lambda name: (
    ("/python_backend_stubs/" in name and f"/python_backend_stubs/{pyver}/" not in name)
    or name.startswith("nvidia_pytriton.libs/libpython3")))
repack(next(dest.glob("numpy-*.whl")), lambda name: "/tests/" in name)
PY
fi
ls -la "$DEST"
du -sh "$DEST"
