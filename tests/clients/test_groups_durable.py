"""Group membership survives a broker restart, as in Kafka.

Confluent-kafka consumers (eager and cooperative) and a kafka-python consumer keep running while `waterline serve` is killed with
SIGKILL and restarted on the same data dir and port: they stay in their generation (same member
id, no revoke or lost-partition callback), keep consuming, and their commits after the restart
succeed. A member that never comes back is expired after its session timeout and the group goes
Empty, keeping its protocol type.
"""

import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.admin import KafkaAdminClient

PARTITIONS = 6
# Long enough that neither the client (librdkafka also times sessions out locally) nor the
# restarted broker expires the member while the broker restarts.
SESSION_MS = 10000


def create_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)


def produce(bootstrap, topic, n, start=0):
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "broker.address.family": "v4"})
    for i in range(start, start + n):
        p.produce(topic, value=f"v{i}".encode(), partition=i % PARTITIONS,
                  on_delivery=lambda err, _m: err and errors.append(err))
    assert p.flush(30) == 0
    assert not errors, errors


def wait_for(cond, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def describe(bootstrap, group):
    """(state, protocol type, member ids) as DescribeGroups reports them."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        g = admin.describe_groups([group])[group]
        return g["group_state"], g["protocol_type"], sorted(m["member_id"] for m in g["members"])
    finally:
        admin.close()


def restart(broker):
    broker.pin_port()
    broker.kill()
    broker.start()


class ConfluentMember(threading.Thread):
    """A subscribe() consumer polling on its own thread, recording rebalance callbacks."""

    def __init__(self, bootstrap, group, topic, assignor):
        super().__init__(daemon=True)
        self.config = {
            "partition.assignment.strategy": assignor,
            "bootstrap.servers": bootstrap,
            "broker.address.family": "v4",
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": 300,
            "reconnect.backoff.max.ms": 500,
        }
        self.topic = topic
        self.events = []  # ("assign" | "revoke" | "lost", partitions)
        self.records = []
        self.member_id = None
        self.assigned = frozenset()
        self.commit_requests = []
        self.commit_results = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        c = Consumer(self.config)

        def on_assign(_c, parts):
            self.events.append(("assign", sorted(p.partition for p in parts)))

        def on_revoke(_c, parts):
            self.events.append(("revoke", sorted(p.partition for p in parts)))

        def on_lost(_c, parts):
            self.events.append(("lost", sorted(p.partition for p in parts)))

        c.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        try:
            while not self.stop.is_set():
                with self.lock:
                    pending, self.commit_requests = self.commit_requests, []
                for _ in pending:
                    try:
                        c.commit(asynchronous=False)
                        self.commit_results.append("ok")
                    except KafkaException as e:
                        self.commit_results.append(e)
                msg = c.poll(0.05)
                if msg is not None and msg.error() is None:
                    with self.lock:
                        self.records.append((msg.partition(), msg.offset()))
                self.member_id = c.memberid()
                self.assigned = frozenset(tp.partition for tp in c.assignment())
        finally:
            c.close()

    def commit(self, timeout=30):
        n = len(self.commit_results)
        with self.lock:
            self.commit_requests.append(1)
        wait_for(lambda: len(self.commit_results) > n, "the commit's result", timeout)
        result = self.commit_results[n]
        assert result == "ok", f"commit failed: {result!r}"

    def count(self):
        with self.lock:
            return len(self.records)


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_confluent_consumers_keep_their_generation_across_kill9(gbroker, topic, assignor):
    create_topic(gbroker.bootstrap, topic)
    group = "durable-ck-" + uuid.uuid4().hex[:8]
    produce(gbroker.bootstrap, topic, 60)
    members = [ConfluentMember(gbroker.bootstrap, group, topic, assignor) for _ in range(2)]
    for m in members:
        m.start()
    try:
        wait_for(lambda: all(len(m.assigned) == 3 for m in members), "three partitions each")
        wait_for(lambda: sum(m.count() for m in members) == 60, "60 records consumed")
        for m in members:
            m.commit()
        ids = sorted(m.member_id for m in members)
        assert all(ids)
        events = [list(m.events) for m in members]

        restart(gbroker)

        # The restored group is Stable with the same members, before any rejoin could happen.
        assert describe(gbroker.bootstrap, group) == ("Stable", "consumer", ids)
        produce(gbroker.bootstrap, topic, 60, start=60)
        wait_for(lambda: sum(m.count() for m in members) == 120,
                 "60 more records consumed after the restart")
        for m in members:
            m.commit()
        # Heartbeats keep succeeding for a few intervals: still no rebalance.
        time.sleep(2)
        assert [m.events for m in members] == events, "a rebalance callback ran"
        assert sorted(m.member_id for m in members) == ids
        assert describe(gbroker.bootstrap, group) == ("Stable", "consumer", ids)
        seen = [r for m in members for r in m.records]
        assert len(seen) == len(set(seen)) == 120, "a record was consumed twice"
    finally:
        for m in members:
            m.stop.set()
        for m in members:
            m.join(30)
    offsets = committed_confluent(gbroker.bootstrap, group, topic)
    assert offsets == {p: 20 for p in range(PARTITIONS)}


def committed_confluent(bootstrap, group, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                  "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


class Recorder(ConsumerRebalanceListener):
    def __init__(self):
        self.events = []

    def on_partitions_revoked(self, revoked):
        # kafka-python also calls this before its very first join, with nothing assigned.
        if revoked:
            self.events.append(("revoke", sorted(tp.partition for tp in revoked)))

    def on_partitions_assigned(self, assigned):
        self.events.append(("assign", sorted(tp.partition for tp in assigned)))

    def on_partitions_lost(self, lost):
        self.events.append(("lost", sorted(tp.partition for tp in lost)))


def test_kafka_python_consumer_keeps_its_generation_across_kill9(gbroker, topic):
    create_topic(gbroker.bootstrap, topic)
    group = "durable-kp-" + uuid.uuid4().hex[:8]
    produce(gbroker.bootstrap, topic, 60)
    listener = Recorder()
    c = KafkaConsumer(
        bootstrap_servers=gbroker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=300,
        reconnect_backoff_max_ms=500,
    )
    c.subscribe([topic], listener=listener)
    records = set()

    def poll_until(n, what, timeout=40.0):
        deadline = time.monotonic() + timeout
        while len(records) < n and time.monotonic() < deadline:
            for _tp, msgs in c.poll(timeout_ms=100).items():
                records.update((r.partition, r.offset) for r in msgs)
        assert len(records) == n, f"timed out waiting for {what}: {len(records)}"

    try:
        poll_until(60, "60 records consumed")
        c.commit()
        generation = c._coordinator._generation  # (generation id, member id, protocol)
        assert generation.generation_id > 0
        assert listener.events == [("assign", list(range(PARTITIONS)))]

        restart(gbroker)

        state, protocol_type, members = describe(gbroker.bootstrap, group)
        assert (state, protocol_type, members) == ("Stable", "consumer", [generation.member_id])
        produce(gbroker.bootstrap, topic, 60, start=60)
        poll_until(120, "60 more records consumed after the restart")
        c.commit()
        # A few more heartbeat intervals: still the same generation, no rebalance.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            c.poll(timeout_ms=100)
        assert listener.events == [("assign", list(range(PARTITIONS)))], listener.events
        now = c._coordinator._generation
        assert (now.generation_id, now.member_id) == (generation.generation_id,
                                                      generation.member_id)
        assert {tp.partition: c.committed(tp) for tp in c.assignment()} == {
            p: 20 for p in range(PARTITIONS)}
    finally:
        c.close()


# A consumer in its own process, so the test can SIGKILL it (a crash: no LeaveGroup).
VANISHING_CONSUMER = textwrap.dedent("""
    import sys
    from confluent_kafka import Consumer
    bootstrap, group, topic, session = sys.argv[1:]
    c = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                  "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": int(session),
                  "heartbeat.interval.ms": 200})
    c.subscribe([topic])
    got = 0
    while got < 6:
        msg = c.poll(0.2)
        if msg is not None and msg.error() is None:
            got += 1
    c.commit(asynchronous=False)
    print("ready", c.memberid(), flush=True)
    while True:
        c.poll(0.2)
""")


def test_a_member_that_never_returns_expires_and_the_group_goes_empty(gbroker, topic):
    create_topic(gbroker.bootstrap, topic)
    group = "durable-gone-" + uuid.uuid4().hex[:8]
    produce(gbroker.bootstrap, topic, 6)
    session_ms = 3000
    proc = subprocess.Popen(
        [sys.executable, "-c", VANISHING_CONSUMER, gbroker.bootstrap, group, topic,
         str(session_ms)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready "), line
        member_id = line.split()[1]
    finally:
        proc.kill()
        proc.wait(30)

    restart(gbroker)

    # Restored with its member, whose session restarted at the restart.
    restarted_at = time.monotonic()
    assert describe(gbroker.bootstrap, group) == ("Stable", "consumer", [member_id])
    wait_for(lambda: describe(gbroker.bootstrap, group)[0] == "Empty",
             "the absent member to expire", timeout=30)
    waited = time.monotonic() - restarted_at
    assert waited >= session_ms / 1000 - 0.5, f"expired after {waited:.1f}s"
    # The protocol type survives the restart and the emptying; offsets stay.
    assert describe(gbroker.bootstrap, group) == ("Empty", "consumer", [])
    assert committed_confluent(gbroker.bootstrap, group, topic) == {
        p: 1 for p in range(PARTITIONS)}
