"""A consume-transform-produce worker for the transaction crash tests: reads `IN` with
assign() from the group's committed offsets (read_committed), and for every batch of up to 10
records produces `out-<value>` to `OUT` and commits the input offsets in the same Kafka
transaction (send_offsets_to_transaction). Any error ends the process (exit 1): the test
restarts it, and the new instance, with the same transactional id, fences and aborts whatever
the old one left open.

Usage: python txn_worker.py BOOTSTRAP IN OUT GROUP TXN_ID PARTITIONS
"""

import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def main():
    bootstrap, src, dst, group, txn_id, partitions = sys.argv[1:7]
    partitions = int(partitions)
    # First fence the previous instance: init_transactions aborts whatever it left open, which
    # also releases its pending offsets (reading committed offsets before that would wait for
    # them: OffsetFetch answers UNSTABLE_OFFSET_COMMIT while a transaction holds offsets).
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 2}
    )
    producer.init_transactions(30)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    tps = consumer.committed([TopicPartition(src, p) for p in range(partitions)], timeout=20)
    for tp in tps:
        if tp.offset < 0:
            tp.offset = OFFSET_BEGINNING
    consumer.assign(tps)
    print("ready", flush=True)
    while True:
        msgs = [m for m in consumer.consume(num_messages=10, timeout=0.5) if not m.error()]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            producer.produce(dst, key=m.value(), value=b"out-" + m.value(), partition=m.partition())
        positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        producer.send_offsets_to_transaction(
            positions, consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any failure ends the worker; the test restarts it
        print("worker failed:", e, file=sys.stderr, flush=True)
        sys.exit(1)
