import uuid

import pytest

from harness import Broker


@pytest.fixture
def broker(tmp_path):
    """A fresh broker on its own data dir, stopped cleanly after the test."""
    b = Broker(tmp_path / "data")
    b.start()
    yield b
    if b.proc is not None:
        code = b.stop()
        assert code == 0, "broker did not shut down cleanly:\n" + b.stderr_text()[-4000:]


@pytest.fixture
def topic():
    return "t-" + uuid.uuid4().hex[:12]


CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
