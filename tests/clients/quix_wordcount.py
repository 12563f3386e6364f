"""A Quix Streams application used by test_quixstreams.py: a stateful, exactly-once word count.

Reads `words` (key = the word), keeps a running count per word in Quix's state store (RocksDB,
backed by a compacted changelog topic that Quix creates on the broker), and writes
{"word", "n"} to `counts` — all inside one Kafka transaction per checkpoint. Each record sleeps
a little so that a kill -9 from the test lands in the middle of the work.

Usage: quix_wordcount.py BOOTSTRAP STATE_DIR SECONDS
"""

import sys
import time

from quixstreams import Application


def main():
    bootstrap, state_dir, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    app = Application(
        broker_address=bootstrap,
        consumer_group="wordcount",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=state_dir,
        commit_interval=0.3,
        # INFO shows state recovery from the changelog, which the test looks for.
        loglevel="INFO",
        # The broker is killed during the test; keep trying to reach it.
        request_timeout=30,
        # A killed instance's open transaction (Quix picks a new transactional.id per start)
        # holds back read_committed readers until the broker aborts it at this timeout.
        producer_extra_config={"transaction.timeout.ms": 10000},
        # A killed member holds the group's next rebalance until its session times out.
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
    )
    words = app.topic("words", key_deserializer="string", value_deserializer="string")
    counts = app.topic("counts", key_serializer="string", value_serializer="json")

    def count(value, state):
        time.sleep(0.003)
        n = state.get("n", 0) + 1
        state.set("n", n)
        return {"word": value, "n": n}

    app.dataframe(words).apply(count, stateful=True).to_topic(counts)
    app.run(timeout=seconds)


if __name__ == "__main__":
    main()
