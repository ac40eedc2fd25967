"""Kernel ids that name their replica (--kernel-id-prefix), how clients route by them."""
from __future__ import annotations

import re
from typing import Iterator

import pytest

import cellgate
from conftest import Server


@pytest.fixture(scope="module")
def replica() -> Iterator[Server]:
    s = Server("--kernel-id-prefix=cellgate-0")
    yield s
    assert s.stop() == 0, s.log_tail()


def test_ids_name_the_replica_and_the_wrong_replica_says_which_is_right(replica: Server) -> None:
    with replica.client() as client, client.start_kernel() as kernel:
        assert re.fullmatch(r"cellgate-0-[0-9a-f]{32}", kernel.id), kernel.id
        assert kernel.execute("1 + 1").text == "2\n"
        elsewhere = "cellgate-1-" + kernel.id[-32:]
        with pytest.raises(cellgate.NotFound,
                           match="names replica .cellgate-1.*this is .cellgate-0."):
            client.get_kernel(elsewhere)
        with pytest.raises(cellgate.NotFound) as plain:
            client.get_kernel("cellgate-0-" + "0" * 32)
        assert "replica" not in plain.value.message
