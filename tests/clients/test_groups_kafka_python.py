"""Consumer groups with kafka-python against `waterline serve`.

Three subscribe() members split six partitions, one leaves and the others take over, commits
land and every record is consumed exactly once; a consumer resumes at the committed offsets
after the broker is killed with SIGKILL.
"""

import queue
import threading
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

PARTITIONS = 6


def create_topic(bootstrap, topic):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        admin.close()


def produce(bootstrap, topic, n, start=0):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [p.send(topic, value=f"v{i}".encode(), partition=i % PARTITIONS)
               for i in range(start, start + n)]
    p.flush(30)
    for f in futures:
        f.get(timeout=30)
    p.close()


def new_consumer(bootstrap, group, **extra):
    cfg = dict(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=300,
        metadata_max_age_ms=2000,
    )
    cfg.update(extra)
    return KafkaConsumer(**cfg)


def wait_for(cond, what, timeout=40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Member(threading.Thread):
    """One subscribe() consumer on its own thread (kafka-python consumers are not thread-safe,
    and a member blocked in a join round must not stop the others from rejoining)."""

    def __init__(self, bootstrap, group, topic):
        super().__init__(daemon=True)
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self.records = []  # (partition, offset, value)
        self.assigned = frozenset()
        self.commands = queue.Queue()
        self.replies = queue.Queue()
        self.lock = threading.Lock()

    def run(self):
        c = new_consumer(self.bootstrap, self.group)
        c.subscribe([self.topic])
        try:
            while True:
                try:
                    cmd = self.commands.get_nowait()
                except queue.Empty:
                    cmd = None
                if cmd == "commit":
                    c.commit()
                    self.replies.put("ok")
                elif cmd == "close":
                    c.close()
                    self.replies.put("ok")
                    return
                for _tp, msgs in c.poll(timeout_ms=50).items():
                    with self.lock:
                        self.records.extend((m.partition, m.offset, m.value) for m in msgs)
                self.assigned = frozenset(tp.partition for tp in c.assignment())
        except Exception as e:  # surfaced by the test through `replies`
            self.replies.put(e)
            raise

    def call(self, cmd, timeout=30):
        self.commands.put(cmd)
        reply = self.replies.get(timeout=timeout)
        assert reply == "ok", f"{cmd} failed: {reply!r}"

    def count(self):
        with self.lock:
            return len(self.records)


def committed(bootstrap, group, topic):
    c = new_consumer(bootstrap, group)
    try:
        out = {}
        for p in range(PARTITIONS):
            o = c.committed(TopicPartition(topic, p))
            if o is not None:
                out[p] = o
        return out
    finally:
        c.close()


def balanced(members, per_member):
    sets = [m.assigned for m in members]
    return (all(len(s) == per_member for s in sets)
            and len(frozenset().union(*sets)) == PARTITIONS
            and sum(len(s) for s in sets) == PARTITIONS)


def test_three_members_split_then_take_over(gbroker, topic):
    create_topic(gbroker.bootstrap, topic)
    group = "kp-" + uuid.uuid4().hex[:8]
    members = [Member(gbroker.bootstrap, group, topic) for _ in range(3)]
    for m in members:
        m.start()
    try:
        wait_for(lambda: balanced(members, 2), "three members with two partitions each")
        first = [m.assigned for m in members]

        produce(gbroker.bootstrap, topic, 300)
        wait_for(lambda: sum(m.count() for m in members) == 300, "300 records consumed")
        for m, parts in zip(members, first):
            assert {p for p, _, _ in m.records} <= parts
        for m in members:
            m.call("commit")
        assert committed(gbroker.bootstrap, group, topic) == {p: 50 for p in range(PARTITIONS)}

        leaver = members.pop()
        leaver.call("close")
        wait_for(lambda: balanced(members, 3), "two members with three partitions each")

        produce(gbroker.bootstrap, topic, 300, start=300)
        wait_for(lambda: sum(m.count() for m in members) + leaver.count() == 600,
                 "600 records consumed")
        for m in members:
            m.call("commit")
        assert committed(gbroker.bootstrap, group, topic) == {p: 100 for p in range(PARTITIONS)}

        seen = [r for m in members + [leaver] for r in m.records]
        assert len(seen) == 600, "a record was consumed twice"
        assert sorted(v for _, _, v in seen) == sorted(f"v{i}".encode() for i in range(600))
    finally:
        for m in members:
            if m.is_alive():
                m.call("close")


def test_resume_at_committed_offsets_after_kill(gbroker, topic):
    create_topic(gbroker.bootstrap, topic)
    group = "kp-resume-" + uuid.uuid4().hex[:8]
    produce(gbroker.bootstrap, topic, 600)

    c = new_consumer(gbroker.bootstrap, group)
    c.subscribe([topic])
    before = []
    deadline = time.monotonic() + 30
    # Commit explicit positions after exactly 300 records, as an application that processed them.
    while len(before) < 300 and time.monotonic() < deadline:
        for _tp, msgs in c.poll(timeout_ms=200, max_records=300 - len(before)).items():
            before.extend((m.partition, m.offset) for m in msgs)
    assert len(before) == 300
    commit_point = {}
    for p, o in before:
        commit_point[p] = max(commit_point.get(p, 0), o + 1)
    c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "resume-test", -1)
              for p, o in commit_point.items()})
    c.close()

    gbroker.kill()
    gbroker.start()

    assert committed(gbroker.bootstrap, group, topic) == commit_point
    c2 = new_consumer(gbroker.bootstrap, group)
    c2.subscribe([topic])
    after = []
    deadline = time.monotonic() + 30
    while len(after) < 300 and time.monotonic() < deadline:
        for _tp, msgs in c2.poll(timeout_ms=200).items():
            after.extend((m.partition, m.offset) for m in msgs)
    meta = c2.committed(TopicPartition(topic, next(iter(commit_point))), metadata=True)
    c2.close()
    assert len(after) == 300, "records lost or re-read"
    for p in range(PARTITIONS):
        offsets = sorted(o for q, o in after if q == p)
        assert offsets == list(range(commit_point.get(p, 0), 100))
    assert set(before).isdisjoint(after)
    assert meta.metadata == "resume-test"
