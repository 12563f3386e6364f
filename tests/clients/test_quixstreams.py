"""A real stream processor against `waterline serve`: Quix Streams (Python, on librdkafka) running
a stateful word count with processing_guarantee="exactly-once".

It needs what stream processors need from a broker: a compacted changelog topic created with
topic configs, transactions with send_offsets_to_transaction, read_committed consumption, and
consumer groups. The processor and the broker are killed with SIGKILL while records are in
flight; after every restart the processor restores its state (sometimes from the changelog topic
alone, with its local state wiped) and the committed output must still hold every count exactly
once: for each word, n = 1, 2, ..., occurrences, no gap and no repeat.
"""

import json
import os
import random
import signal
import subprocess
import shutil
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import running_broker

APP = Path(__file__).with_name("quix_wordcount.py")
# The processor runs in its own venv (scripts/test.sh makes it; Quix pins confluent-kafka).
QUIX_PYTHON = os.environ.get(
    "QUIX_PYTHON", str(Path(__file__).resolve().parents[2] / ".venv-quix" / "bin" / "python")
)
WORDS = 4000
DISTINCT = 40


def _feed(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("words", num_partitions=2, replication_factor=1)])[
        "words"
    ].result(timeout=30)
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    sent = Counter()
    for i in range(WORDS):
        w = "w%02d" % random.Random(i).randrange(DISTINCT)
        p.produce("words", value=w.encode(), key=w.encode())
        sent[w] += 1
    assert p.flush(30) == 0
    return sent


def _committed_counts(bootstrap, expect, idle=30.0):
    """Every committed record of `counts` (read_committed), as {word: [n, ...]} in offset order."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "checker-" + uuid.uuid4().hex[:8],
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    md = c.list_topics("counts", timeout=30)
    parts = list(md.topics["counts"].partitions)
    c.assign([TopicPartition("counts", p, 0) for p in parts])
    seen = defaultdict(list)
    got, last = 0, time.monotonic()
    while time.monotonic() - last < idle and got < expect:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        v = json.loads(m.value())
        seen[v["word"]].append(v["n"])
        got += 1
        last = time.monotonic()
    c.close()
    return seen


def _output_end(bootstrap):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return c.get_watermark_offsets(TopicPartition("counts", 0), timeout=10)[1]
    except Exception:
        return -1  # `counts` not created yet
    finally:
        c.close()


def _wait_for_output_growth(bootstrap, timeout=90.0):
    start = _output_end(bootstrap)
    deadline = time.monotonic() + timeout
    while _output_end(bootstrap) <= max(start, 0):
        assert time.monotonic() < deadline, "the processor made no progress"
        time.sleep(0.2)


def _start_app(bootstrap, state_dir, seconds, log):
    return subprocess.Popen(
        [QUIX_PYTHON, str(APP), bootstrap, str(state_dir), str(seconds)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def test_exactly_once_word_count_survives_kill_9_of_processor_and_broker(tmp_path):
    assert Path(QUIX_PYTHON).exists(), (
        f"{QUIX_PYTHON} is missing: run scripts/test.sh, or make a venv with "
        "tests/clients/requirements-quix.txt and point QUIX_PYTHON at its python"
    )
    rng = random.Random(7)
    state_dir = tmp_path / "state"
    log_path = tmp_path / "app.log"
    with running_broker(tmp_path, fast_groups=True) as broker, open(log_path, "w") as log:
        broker.pin_port()
        sent = _feed(broker.bootstrap)
        for round_ in range(4):
            app = _start_app(broker.bootstrap, state_dir, 60, log)
            # Kill while records are in flight: once output appears, a little later.
            _wait_for_output_growth(broker.bootstrap)
            time.sleep(rng.uniform(0.2, 1.5))
            if round_ == 2:
                # The broker dies with a transaction open; the processor outlives it.
                broker.kill()
                time.sleep(0.5)
                broker.start()
                time.sleep(rng.uniform(2.0, 4.0))
            app.send_signal(signal.SIGKILL)
            app.wait(timeout=30)
            if round_ % 2 == 1:
                # A fresh worker: the state comes back from the changelog topic alone.
                shutil.rmtree(state_dir, ignore_errors=True)
        # The last run finishes the input and stops 15 s after the last record.
        app = _start_app(broker.bootstrap, state_dir, 15, log)
        try:
            app.wait(timeout=240)
        finally:
            if app.poll() is None:
                app.kill()
                app.wait(timeout=30)
        log.flush()
        assert app.returncode == 0, log_path.read_text()[-4000:]
        seen = _committed_counts(broker.bootstrap, WORDS)
        for word, total in sorted(sent.items()):
            assert seen[word] == list(range(1, total + 1)), (
                word,
                total,
                seen[word][:20],
                log_path.read_text()[-3000:],
            )
        assert sum(len(v) for v in seen.values()) == WORDS
        # The wiped-state restarts really rebuilt the counts from the changelog topic.
        assert "Recovery successful" in log_path.read_text()
