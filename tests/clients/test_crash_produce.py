"""kill -9 during an acks=all produce loop, 50 times: nothing acknowledged is ever lost.

Each round starts the broker on the same data dir, produces from a librdkafka producer until a
random moment, SIGKILLs the broker, restarts it, and reads the whole partition back with CRC
checks on. Every record whose delivery was acknowledged must be there at the offset it was
acknowledged with; offsets must be dense; every record present must be one the test produced.
"""

import os
import random
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from harness import Broker

ROUNDS = int(os.environ.get("WATERLINE_CRASH_ROUNDS", "50"))
TOPIC = "crash-loop"


def produce_until(bootstrap, stop_at, round_no, acked):
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 2,
            "batch.num.messages": 50,
            "message.timeout.ms": 5000,
            "broker.address.family": "v4",
        }
    )

    def on_delivery(err, msg):
        if err is None:
            acked[msg.value()] = msg.offset()

    seq = 0
    while time.monotonic() < stop_at:
        try:
            p.produce(TOPIC, value=f"r{round_no}-{seq}".encode() + b"." * (seq % 200),
                      on_delivery=on_delivery)
            seq += 1
        except BufferError:
            pass
        p.poll(0.001 if seq % 20 == 0 else 0)
    p.poll(0)
    return p


def read_all(bootstrap):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "crash-reader",
            "enable.auto.commit": False,
            "check.crcs": True,
            "broker.address.family": "v4",
        }
    )
    try:
        low, high = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
        assert low == 0
        c.assign([TopicPartition(TOPIC, 0, 0)])
        out = []
        deadline = time.monotonic() + 60
        while len(out) < high and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            out.append((msg.offset(), msg.value()))
        return high, out
    finally:
        c.close()


def test_kill9_during_acks_all_produce_loses_nothing(tmp_path):
    rng = random.Random(2026)
    broker = Broker(tmp_path / "data")
    acked = {}  # value -> acknowledged offset, across all rounds
    try:
        for round_no in range(ROUNDS):
            bootstrap = broker.start()
            stop_at = time.monotonic() + rng.uniform(0.05, 0.4)
            producer = produce_until(bootstrap, stop_at, round_no, acked)
            broker.kill()
            # Acknowledgements that already arrived count; whatever was in flight is purged.
            producer.poll(0)
            producer.purge()
            producer.flush(0)

            bootstrap = broker.start()
            try:
                high, records = read_all(bootstrap)
            except KafkaException as e:
                # Killed before the auto-created topic was committed: only acceptable while
                # nothing has been acknowledged yet (then there is nothing to lose).
                if acked or e.args[0].code() != KafkaError._UNKNOWN_PARTITION:
                    raise
                high, records = 0, []
            assert len(records) == high, f"round {round_no}: read {len(records)} of {high}"
            assert [off for off, _ in records] == list(range(high)), "offsets are not dense"
            by_value = {}
            for off, value in records:
                assert value.startswith(b"r"), f"round {round_no}: unexpected record {value[:40]!r}"
                by_value[value] = off
            lost = {v: o for v, o in acked.items() if by_value.get(v) != o}
            assert not lost, f"round {round_no}: {len(lost)} acknowledged records lost or moved"
            # Mostly crash again; every fifth round stops cleanly so the clean start path runs too.
            if round_no % 5 == 4:
                assert broker.stop() == 0, broker.stderr_text()[-4000:]
            else:
                broker.kill()
        assert len(acked) > ROUNDS, "the loop acknowledged almost nothing; the test proved little"
    finally:
        broker.kill()
