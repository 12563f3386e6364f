import uuid

import pytest

from harness import running_broker


@pytest.fixture
def broker(tmp_path):
    """A fresh broker on its own data dir, stopped cleanly after the test."""
    with running_broker(tmp_path) as b:
        yield b


@pytest.fixture
def gbroker(tmp_path):
    """A broker whose groups use a 100 ms initial rebalance delay; stopped cleanly at the end."""
    with running_broker(tmp_path, fast_groups=True) as b:
        yield b


@pytest.fixture
def topic():
    return "t-" + uuid.uuid4().hex[:12]


CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
