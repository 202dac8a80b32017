"""`python -m services.embedded_triton`: run the embedded tritonserver until Ctrl-C/SIGTERM."""
from __future__ import annotations

import logging
import signal
import threading

from services.embedded_triton.launcher import EmbeddedTriton


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedTriton() as triton:
        print(f"tritonserver ready: grpc {triton.grpc_url}  metrics {triton.metrics_url}", flush=True)
        assert triton.process is not None  # set by start()
        while not stop.is_set() and triton.process.poll() is None:
            stop.wait(0.5)


if __name__ == "__main__":
    main()
