"""Open a converted ONNX model from the verified cache (see store.py) with
onnxruntime, and describe its provenance."""
from __future__ import annotations

from prelabel.core.models.store import verified_model_path
from services.modelkit.weights import PRETRAINED, WeightsInfo


def open_session(name: str, threads: int, cache_dir=None):
    """(InferenceSession, WeightsInfo). The file is hashed against the lock first, so a
    tampered or half-written cache file is refused at load."""
    import onnxruntime as ort

    path, locked = verified_model_path(name, cache_dir)
    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    info = WeightsInfo(kind=PRETRAINED, source=locked.source, architecture=locked.architecture,
                       sha256=locked.sha256, license=locked.license)
    return session, info


def combine(infos: list[WeightsInfo], architecture: str) -> WeightsInfo:
    """Provenance of a model made of several files (e.g. detector + mask model)."""
    return WeightsInfo(
        kind=PRETRAINED,
        source=" + ".join(i.source for i in infos),
        architecture=architecture,
        sha256=",".join(i.sha256 for i in infos),
        license="; ".join(dict.fromkeys(i.license for i in infos)),
    )
