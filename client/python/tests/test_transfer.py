"""TransferVariable between real ipykernels: a dict, a numpy array and a DataFrame arrive
equal; the errors say what went wrong; both kernels' event logs hold the executions."""
from __future__ import annotations

import os
import signal
import threading
from typing import Iterator, Tuple

import pytest

import cellgate
import cellgate.v1.kernel_pb2
from cellgate import Client, event_kind
from helpers import read_until


@pytest.fixture()
def pair(client: Client) -> Iterator[Tuple[cellgate.Kernel, cellgate.Kernel]]:
    with client.start_kernel(labels={"suite": "transfer"}) as a, \
            client.start_kernel(labels={"suite": "transfer"}) as b:
        yield a, b


def run(kernel: cellgate.Kernel, code: str) -> str:
    result = kernel.execute(code)
    assert result.ok, result.text
    return result.text


def test_a_dict_an_array_and_a_dataframe_arrive_equal(
        client: Client, pair: Tuple[cellgate.Kernel, cellgate.Kernel]) -> None:
    source, target = pair
    run(source, "import numpy as np, pandas as pd\n"
                "config = {'rate': 0.5, 'tags': ['a', 'b'], 'nested': {'n': (1, 2)}}\n"
                "matrix = np.arange(12, dtype=np.float32).reshape(3, 4)\n"
                "frame = pd.DataFrame({'x': range(1000), 'y': [str(i) for i in range(1000)]})")
    moved = client.transfer_variable(source, "config", target)
    assert moved.type == "dict" and moved.size > 0
    assert run(target, "print(config == {'rate': 0.5, 'tags': ['a', 'b'], "
                       "'nested': {'n': (1, 2)}})") == "True\n"
    moved = source.send_variable("matrix", target, as_name="m")
    assert moved.type == "numpy.ndarray"
    assert run(target, "print(m.dtype, m.shape, m.sum())") == "float32 (3, 4) 66.0\n"
    moved = client.transfer_variable(source.id, "frame", target.id, as_name="df")
    assert moved.type == "pandas.core.frame.DataFrame"
    assert run(target, "print(len(df), df['x'].sum(), df['y'].iloc[-1])") == "1000 499500 999\n"
    # Nothing of the transfer is left in either workspace.
    for kernel in (source, target):
        assert "cellgate" not in run(kernel, "import os; print(os.listdir('.'))")
    # Both event logs hold the executions that did it.
    for kernel, execution_id in ((source, moved.from_execution_id),
                                 (target, moved.to_execution_id)):
        finished = [e for e in kernel.stream_outputs(follow=False)
                    if e.execution_id == execution_id and event_kind(e) == "execution_finished"]
        assert len(finished) == 1


def test_errors_say_what_went_wrong(client: Client,
                                    pair: Tuple[cellgate.Kernel, cellgate.Kernel]) -> None:
    source, target = pair
    with pytest.raises(cellgate.NotFound, match="'missing' is not defined"):
        client.transfer_variable(source, "missing", target)
    run(source, "import threading; lock = threading.Lock()")
    with pytest.raises(cellgate.FailedPrecondition, match="pickling lock: TypeError"):
        client.transfer_variable(source, "lock", target)
    run(source, "class Local:\n    pass\nobj = Local()")
    with pytest.raises(cellgate.FailedPrecondition, match="unpickling the value: AttributeError"):
        client.transfer_variable(source, "obj", target)
    with pytest.raises(cellgate.InvalidArgument, match="name"):
        client.transfer_variable(source, "not an identifier", target)
    with pytest.raises(cellgate.InvalidArgument, match="as_name.*keyword"):
        client.transfer_variable(source, "obj", target, as_name="class")
    with pytest.raises(cellgate.InvalidArgument, match="to_kernel_id"):
        client.transfer_variable(source, "obj", source)
    with pytest.raises(cellgate.NotFound):
        client.transfer_variable(source, "obj", "0" * 32)
    for kernel in (source, target):
        assert "cellgate" not in run(kernel, "import os; print(os.listdir('.'))")


def test_a_busy_source_past_the_timeout_is_deadline_exceeded(
        client: Client, pair: Tuple[cellgate.Kernel, cellgate.Kernel]) -> None:
    source, target = pair
    run(source, "value = 42")
    source.add_cell("import time; time.sleep(30)", cell_id="slow")
    stream = source.stream_outputs(after_seq=source.info().last_seq)
    runner = threading.Thread(target=source.run_cell, args=("slow",), daemon=True)
    runner.start()
    read_until(stream, lambda e: event_kind(e) == "execution_started")
    stream.close()
    with pytest.raises(cellgate.DeadlineExceeded, match="within"):
        client.transfer_variable(source, "value", target, timeout=1)
    # The slow cell was not interrupted by the transfer giving up.
    assert source.cell("slow").state == "RUNNING"
    source.interrupt()
    runner.join(30)


def test_a_dead_target_is_refused(client: Client,
                                  pair: Tuple[cellgate.Kernel, cellgate.Kernel]) -> None:
    source, target = pair
    run(source, "value = 1")
    stream = target.stream_outputs(after_seq=target.info().last_seq)
    os.kill(target.info().pid, signal.SIGKILL)
    read_until(stream, lambda e: event_kind(e) == "kernel_status"
               and e.kernel_status.state == cellgate.v1.kernel_pb2.KERNEL_STATE_DEAD)
    stream.close()
    with pytest.raises(cellgate.FailedPrecondition, match="dead"):
        client.transfer_variable(source, "value", target)
