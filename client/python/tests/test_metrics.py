"""The Prometheus endpoint (--metrics-listen), scraped over HTTP around a scripted workload, and
the log lines the same events write."""
from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Iterator, Tuple

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

import cellgate
from cellgate.v1 import kernel_gateway_pb2 as gw, kernel_gateway_pb2_grpc as gw_grpc
from conftest import Server

TOKEN = "metrics-test-token"
Sample = Tuple[str, Tuple[Tuple[str, str], ...]]
DEADLINE_S = 30.0


class MetricsServer(Server):
    def __init__(self) -> None:
        self.metrics_port_file = Path(f"/tmp/cg-metrics-{os.getpid()}-{time.monotonic_ns()}")
        super().__init__("--metrics-listen=127.0.0.1:0",
                         f"--metrics-port-file={self.metrics_port_file}", "--pool-size=1",
                         token=TOKEN)
        self.metrics_url = (
            f"http://127.0.0.1:{self.metrics_port_file.read_text().strip()}/metrics")

    def scrape(self) -> Dict[Sample, float]:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            assert response.status == 200
            text = response.read().decode()
        samples: Dict[Sample, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def stop(self) -> int:
        self.metrics_port_file.unlink(missing_ok=True)
        return super().stop()


def value(samples: Dict[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling a condition, with a deadline


@pytest.fixture(scope="module")
def server() -> Iterator[MetricsServer]:
    s = MetricsServer()
    yield s
    assert s.stop() == 0, s.log_tail()


def test_a_workload_moves_the_counters_it_should(server: MetricsServer) -> None:
    wait_for(lambda: "event=kernel_pooled" in server.log_tail(100_000), "the warm pool")
    before = server.scrape()
    with server.client() as client:
        pooled = client.start_kernel()                       # default settings: from the pool
        cold = client.start_kernel(env={"WHO": "cold"})      # its own env: a cold start
        assert pooled.execute("print('x' * 1000)").ok
        assert not cold.execute("1 / 0").ok
        assert cold.execute("import time; time.sleep(0.05); 'slept'").ok

        # Wrong token; a kernel that does not exist (with a request id the log carries).
        channel = grpc.insecure_channel(server.target)
        stub = gw_grpc.KernelGatewayStub(channel)
        with pytest.raises(grpc.RpcError) as unauthenticated:
            stub.GetKernel(gw.GetKernelRequest(kernel_id=pooled.id),
                           metadata=(("authorization", "Bearer wrong"),), timeout=10)
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetKernel(gw.GetKernelRequest(kernel_id="feedfeedfeedfeed"),
                           metadata=(("authorization", f"Bearer {TOKEN}"),
                                     ("x-request-id", "req-42")), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        # StreamOutputs is served raw: its kernel id is read for the log only when it fails.
        with pytest.raises(grpc.RpcError) as missing_stream:
            list(stub.StreamOutputs(gw.StreamOutputsRequest(kernel_id="beefbeefbeefbeef"),
                                    metadata=(("authorization", f"Bearer {TOKEN}"),
                                              ("x-request-id", "req-43")), timeout=10))
        assert missing_stream.value.code() == grpc.StatusCode.NOT_FOUND
        # So are GetNotebook and ImportNotebook.
        with pytest.raises(grpc.RpcError) as missing_notebook:
            stub.ImportNotebook(gw.ImportNotebookRequest(kernel_id="cafecafecafecafe",
                                                         ipynb=b"{}"),
                                metadata=(("authorization", f"Bearer {TOKEN}"),
                                          ("x-request-id", "req-44")), timeout=10)
        assert missing_notebook.value.code() == grpc.StatusCode.NOT_FOUND
        channel.close()

        # One follower open: the gauge counts it; closed: it does not.
        stream = pooled.stream_outputs(follow=True)
        next(iter(stream))
        wait_for(lambda: value(server.scrape(), "cellgate_stream_subscribers") == 1,
                 "the follower to be counted")
        stream.close()
        wait_for(lambda: value(server.scrape(), "cellgate_stream_subscribers") == 0,
                 "the follower to be gone")

        cold.restart()
        os.kill(pooled.info().pid, signal.SIGKILL)   # the suite's servers do not restart kernels
        wait_for(lambda: pooled.info().state == cellgate.KernelState.DEAD, "the kernel's death")
        after = server.scrape()

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("cellgate_kernel_starts_total", source="pooled", result="ok") == 1
        assert delta("cellgate_kernel_starts_total", source="cold", result="ok") == 1
        assert delta("cellgate_kernel_start_duration_seconds_count", source="cold") == 1
        assert delta("cellgate_kernel_start_duration_seconds_count", source="pooled") == 1
        assert (value(after, "cellgate_kernel_start_duration_seconds_sum", source="pooled")
                < value(after, "cellgate_kernel_start_duration_seconds_sum", source="cold"))
        assert delta("cellgate_executions_total", status="ok") == 2
        assert delta("cellgate_executions_total", status="error") == 1
        assert delta("cellgate_execution_duration_seconds_count") == 3
        assert delta("cellgate_execution_duration_seconds_sum") >= 0.05
        assert delta("cellgate_iopub_messages_total") >= 9   # busy, input, output, idle x3
        assert delta("cellgate_iopub_bytes_total") >= 1000   # the printed line at least
        assert delta("cellgate_auth_failures_total") == 1
        assert delta("cellgate_kernel_restarts_total", trigger="requested") == 1
        assert delta("cellgate_kernel_deaths_total", reason="signal") == 1
        method = "/cellgate.v1.KernelGateway/"
        assert delta("cellgate_grpc_requests_total", method=method + "GetKernel",
                     code="NOT_FOUND") == 1
        assert delta("cellgate_grpc_requests_total", method=method + "GetKernel",
                     code="UNAUTHENTICATED") == 1
        assert delta("cellgate_grpc_requests_total", method=method + "StreamOutputs",
                     code="NOT_FOUND") == 1
        assert delta("cellgate_grpc_requests_total", method=method + "ImportNotebook",
                     code="NOT_FOUND") == 1
        assert delta("cellgate_grpc_requests_total", method=method + "Execute", code="OK") == 3
        assert delta("cellgate_grpc_requests_total", method=method + "StartKernel",
                     code="OK") == 2
        assert value(after, "cellgate_kernels", state="dead") == 1
        assert value(after, "cellgate_kernels", state="idle") == 1
        assert value(after, "cellgate_kernels", state="busy") == 0
        assert value(after, "cellgate_execution_queue_depth") == 0
        # No kernel id in any label.
        assert not any(pooled.id in v or cold.id in v
                       for (_, labels) in after for (_, v) in labels)
        cold.shutdown()
        pooled.shutdown()

    log = server.log_tail(1_000_000)
    assert f"event=kernel_started kernel_id={cold.id} from_pool=false" in log
    assert f"event=kernel_started kernel_id={pooled.id} from_pool=true" in log
    assert (f"event=request_failed method={method}GetKernel code=NOT_FOUND" in log
            and "kernel_id=feedfeedfeedfeed request_id=req-42" in log)
    assert (f"event=request_failed method={method}StreamOutputs code=NOT_FOUND" in log
            and "kernel_id=beefbeefbeefbeef request_id=req-43" in log)
    assert (f"event=request_failed method={method}ImportNotebook code=NOT_FOUND" in log
            and "kernel_id=cafecafecafecafe request_id=req-44" in log)
    assert f"event=kernel_restarting kernel_id={cold.id} trigger=requested" in log
    assert f"event=kernel_died kernel_id={pooled.id}" in log
    assert f"event=kernel_shutdown kernel_id={cold.id}" in log
    # Code and outputs never reach the log.
    assert "1 / 0" not in log and "x" * 1000 not in log and "slept" not in log
