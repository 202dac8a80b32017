"""The calls a bench segment makes: Detect through the suite, the same model through
bare tritonclient (grpc.aio), the bare echo server; plus the counters read around a
comparison (Triton's per-model statistics, the service's stage histograms)."""
from __future__ import annotations

import urllib.request
from dataclasses import dataclass

import grpc
import numpy as np

from prelabel.v1 import common_pb2, detection_pb2, detection_pb2_grpc

MAX_MESSAGE = 32 * 1024 * 1024
CALL_TIMEOUT_S = 120.0


def detect_request(data: bytes, model: str, image_id: str = "bench") -> detection_pb2.DetectRequest:
    return detection_pb2.DetectRequest(image=common_pb2.Image(data=data, image_id=image_id), model=model)


@dataclass
class Clients:
    detection_address: str
    triton_url: str
    echo_address: str = ""

    async def __aenter__(self) -> Clients:
        import tritonclient.grpc.aio as triton_aio

        opts = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
        self._detection_channel = grpc.aio.insecure_channel(self.detection_address, options=opts)
        self.detector = detection_pb2_grpc.DetectorStub(self._detection_channel)
        # One channel to Triton for all in-flight requests, as the services do.
        self.triton = triton_aio.InferenceServerClient(url=self.triton_url)
        self._echo_channel = None
        if self.echo_address:
            self._echo_channel = grpc.aio.insecure_channel(self.echo_address, options=opts)
            self._echo = self._echo_channel.unary_unary("/bench.Echo/Echo")
        self._outputs: dict[str, list[str]] = {}
        return self

    async def __aexit__(self, *exc) -> None:
        await self._detection_channel.close()
        await self.triton.close()
        if self._echo_channel is not None:
            await self._echo_channel.close()

    # -- calls ---------------------------------------------------------------------
    async def detect(self, request: detection_pb2.DetectRequest) -> detection_pb2.DetectResponse:
        return await self.detector.Detect(request, timeout=CALL_TIMEOUT_S)

    async def outputs_of(self, model: str) -> list[str]:
        if model not in self._outputs:
            cfg = (await self.triton.get_model_config(model, as_json=True))["config"]
            self._outputs[model] = [o["name"] for o in cfg["output"]]
        return self._outputs[model]

    def bare_triton(self, model: str, outputs: list[str]):
        """What a client of Triton itself does: tensor in (already preprocessed),
        every output read back as numpy."""
        from tritonclient.grpc import InferInput, InferRequestedOutput

        requested = [InferRequestedOutput(o) for o in outputs]

        async def call(tensor: np.ndarray):
            inp = InferInput("IMAGE", list(tensor.shape), "UINT8")
            inp.set_data_from_numpy(tensor)
            result = await self.triton.infer(model, [inp], outputs=requested, client_timeout=CALL_TIMEOUT_S)
            return [result.as_numpy(o) for o in outputs]

        return call

    async def echo(self, data: bytes) -> bytes:
        return await self._echo(data, timeout=CALL_TIMEOUT_S)

    # -- counters --------------------------------------------------------------------
    async def triton_stats(self, model: str) -> dict:
        stats = await self.triton.get_inference_statistics(model, as_json=True)
        return stats["model_stats"][0]


def batch_stats_delta(before: dict, after: dict) -> dict:
    """Executions and mean compute time per batch size between two statistics reads."""
    def table(stats):
        return {int(b["batch_size"]): (int(b["compute_infer"].get("count", 0)), int(b["compute_infer"].get("ns", 0)))
                for b in stats.get("batch_stats", [])}

    b, a = table(before), table(after)
    out = {}
    for size, (count, ns) in sorted(a.items()):
        c0, n0 = b.get(size, (0, 0))
        if count - c0 > 0:
            out[size] = {"executions": count - c0, "compute_ms": (ns - n0) / (count - c0) / 1e6}
    return out


def queue_ms_delta(before: dict, after: dict) -> float:
    """Mean time a request waited in Triton's queue between two statistics reads."""
    def q(stats):
        s = stats.get("inference_stats", {}).get("queue", {})
        return int(s.get("count", 0)), int(s.get("ns", 0))

    (c0, n0), (c1, n1) = q(before), q(after)
    return (n1 - n0) / (c1 - c0) / 1e6 if c1 > c0 else float("nan")


def scrape_stages(metrics_url: str) -> dict[str, tuple[float, float]]:
    """{stage: (sum seconds, count)} from the service's prelabel_stage_seconds."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=5) as r:
        text = r.read().decode()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "prelabel_stage_seconds":
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage", "")
            if sample.name.endswith("_sum"):
                sums[stage] = sample.value
            elif sample.name.endswith("_count"):
                counts[stage] = sample.value
    return {s: (sums.get(s, 0.0), counts.get(s, 0.0)) for s in set(sums) | set(counts)}


def stage_means_ms(before: dict, after: dict) -> dict[str, float]:
    out = {}
    for stage, (s1, c1) in after.items():
        s0, c0 = before.get(stage, (0.0, 0.0))
        if c1 > c0:
            out[stage] = (s1 - s0) / (c1 - c0) * 1e3
    return out
