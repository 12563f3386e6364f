"""Benchmark (not a test): produce acks=all and consume over PLAINTEXT, SSL and SASL_SSL
(SCRAM-SHA-256) against one `waterline serve`, interleaved in the same run, plus the time to a
first Metadata answer on a new connection per protocol.

    WATERLINE_BIN=target/release/waterline .venv/bin/python tests/clients/bench_tls.py [MB] [ROUNDS]

confluent-kafka (librdkafka) with 1 KiB records, linger 5 ms, batch.size 1 MB, one partition.
"""

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).parent))
import test_security as ts  # noqa: E402  (certificates and client settings)


class Dirs:
    def __init__(self, root):
        self.root = Path(root)

    def mktemp(self, name):
        p = self.root / name
        p.mkdir()
        return p


def produce(cfg, topic, mb):
    n = mb * 1024
    value = b"x" * 1024
    p = Producer({**cfg, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20,
                  "queue.buffering.max.messages": 100000})
    errors = []
    started = time.monotonic()
    for i in range(n):
        while True:
            try:
                p.produce(topic, value, partition=0, on_delivery=lambda e, _m: e and errors.append(e))
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(120) == 0
    elapsed = time.monotonic() - started
    assert not errors, errors[:3]
    return mb / elapsed


def consume(cfg, topic, mb):
    n = mb * 1024
    c = Consumer({**cfg, "group.id": "bench-" + uuid.uuid4().hex[:6], "enable.auto.commit": False,
                  "fetch.max.bytes": 50 << 20, "max.partition.fetch.bytes": 8 << 20})
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    started = None
    while got < n:
        # Never ask for more than remain: consume() waits out its timeout for a short batch.
        msgs = c.consume(min(10000, n - got), 1)
        if msgs and started is None:
            started = time.monotonic()  # the clock starts at the first records
        got += sum(1 for m in msgs if not m.error())
    elapsed = time.monotonic() - started
    c.close()
    return mb / elapsed


def connect_ms(cfg, tries=20):
    samples = []
    for _ in range(tries):
        started = time.monotonic()
        AdminClient(cfg).list_topics(timeout=10)
        samples.append((time.monotonic() - started) * 1000)
    return statistics.median(samples)


def main():
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tempfile.TemporaryDirectory() as tmp:
        certs = ts.certs.__wrapped__(Dirs(tmp))
        b = ts.secure_broker(Path(tmp) / "broker", certs)
        try:
            cases = [("PLAINTEXT", None), ("SSL", None), ("SASL_SSL", "SCRAM-SHA-256")]
            results = {c: {"produce": [], "consume": []} for c in cases}
            for r in range(rounds):
                for case in cases:
                    protocol, mech = case
                    cfg = ts.client_config(b, certs, protocol, mech) if protocol != "PLAINTEXT" \
                        else {"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"}
                    topic = f"bench-{protocol.lower()}-{r}-{uuid.uuid4().hex[:4]}"
                    results[case]["produce"].append(produce(cfg, topic, mb))
                    results[case]["consume"].append(consume(cfg, topic, mb))
                    print(f"round {r} {protocol:<10} produce {results[case]['produce'][-1]:7.1f} MB/s"
                          f"  consume {results[case]['consume'][-1]:7.1f} MB/s", flush=True)
            base = results[cases[0]]
            for case in cases:
                protocol, _ = case
                cfg = ts.client_config(b, certs, protocol, case[1]) if protocol != "PLAINTEXT" \
                    else {"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"}
                p = statistics.median(results[case]["produce"])
                c = statistics.median(results[case]["consume"])
                print(f"{protocol:<10} produce median {p:7.1f} MB/s ({100 * p / statistics.median(base['produce']):.0f}%)"
                      f"  consume median {c:7.1f} MB/s ({100 * c / statistics.median(base['consume']):.0f}%)"
                      f"  new connection to first Metadata {connect_ms(cfg):.1f} ms (median of 20)")
        finally:
            b.stop()


if __name__ == "__main__":
    main()
