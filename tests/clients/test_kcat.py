"""kcat (librdkafka 2.0, Debian's build) produces and consumes against `waterline serve`."""

import json
import subprocess
import time

import pytest

from conftest import CODECS
from records import expected_offset_for_time


def kcat(bootstrap, *args, input=None, timeout=60):
    cmd = ["kcat", "-b", bootstrap, "-X", "broker.address.family=v4", *args]
    res = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} failed: {res.stderr.decode(errors='replace')}"
    return res.stdout


@pytest.mark.parametrize("codec", CODECS)
def test_roundtrip_every_codec(broker, topic, codec):
    # Three produce calls a little apart so records carry distinct timestamps for the time lookup.
    sent = []
    for round_ in range(3):
        lines = []
        for i in range(20):
            n = round_ * 20 + i
            key = f"key-{n % 5}"
            value = f"value-{n}-" + "x" * (n * 13 % 300)
            sent.append((key, value))
            lines.append(f"{key}\t{value}")
        kcat(
            broker.bootstrap,
            "-P", "-t", topic, "-p", "0",
            "-K", "\t",
            "-H", f"round={round_}", "-H", "tool=kcat",
            "-X", f"compression.codec={codec}",
            "-X", "acks=all",
            input=("\n".join(lines) + "\n").encode(),
        )
        time.sleep(0.05)

    out = kcat(broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-J")
    msgs = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert len(msgs) == len(sent)
    for n, (m, (key, value)) in enumerate(zip(msgs, sent)):
        assert m["offset"] == n
        assert m["key"] == key
        assert m["payload"] == value
        assert m["headers"] == ["round", str(n // 20), "tool", "kcat"]
    stamps = [m["ts"] for m in msgs]
    assert stamps == sorted(stamps)

    # ListOffsets by timestamp through kcat's query mode.
    records = [{"timestamp": ts} for ts in stamps]
    for ts in sorted({stamps[0], stamps[20], stamps[40], stamps[-1], stamps[-1] + 1}):
        out = kcat(broker.bootstrap, "-Q", "-t", f"{topic}:0:{ts}").decode()
        # kcat prints: "<topic> [0] offset <N>"
        got = int(out.strip().split("offset")[-1])
        want = expected_offset_for_time(records, ts)
        assert got == (want if want is not None else -1), (ts, out)

    # Start consuming at a timestamp: kcat resolves it with ListOffsets.
    out = kcat(broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", f"s@{stamps[40]}", "-e", "-J")
    tail = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert tail[0]["offset"] == expected_offset_for_time(records, stamps[40])
    assert tail[-1]["offset"] == len(sent) - 1


def test_metadata_listing(broker, topic):
    kcat(broker.bootstrap, "-P", "-t", topic, input=b"hello\n")
    md = json.loads(kcat(broker.bootstrap, "-L", "-J"))
    names = [t["topic"] for t in md["topics"]]
    assert topic in names
    assert len(md["brokers"]) == 1
