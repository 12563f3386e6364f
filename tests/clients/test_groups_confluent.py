"""Consumer groups with confluent-kafka (librdkafka) and kcat against `waterline serve`.

Three subscribe() members split six partitions, one leaves and the others take over, commits
land and every record is consumed exactly once; a consumer resumes at the committed offsets after
the broker is killed with SIGKILL; kcat's balanced consumer; standalone assign() commits
(generation -1).
"""

import queue
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6


def create_topic(bootstrap, topic, partitions=PARTITIONS):
    admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(30)


def produce(bootstrap, topic, n, start=0):
    """n records spread round-robin over the partitions; values are `v<i>`."""
    errors = []
    p = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
         "broker.address.family": "v4"}
    )
    for i in range(start, start + n):
        p.produce(topic, value=f"v{i}".encode(), partition=i % PARTITIONS,
                  on_delivery=lambda err, _m: err and errors.append(err))
    assert p.flush(30) == 0
    assert not errors, errors


def consumer_config(bootstrap, group, **extra):
    cfg = {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "topic.metadata.refresh.interval.ms": 2000,
    }
    cfg.update(extra)
    return cfg


def wait_for(cond, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Member(threading.Thread):
    """One subscribe() consumer on its own thread; the test drives it with commands."""

    def __init__(self, bootstrap, group, topic, **extra):
        super().__init__(daemon=True)
        self.config = consumer_config(bootstrap, group, **extra)
        self.topic = topic
        self.records = []  # (partition, offset, value)
        self.assigned = frozenset()
        self.commands = queue.Queue()
        self.replies = queue.Queue()
        self.lock = threading.Lock()

    def run(self):
        c = Consumer(self.config)
        c.subscribe([self.topic])
        try:
            while True:
                try:
                    cmd = self.commands.get_nowait()
                except queue.Empty:
                    cmd = None
                if cmd == "commit":
                    try:
                        c.commit(asynchronous=False)
                        self.replies.put("ok")
                    except KafkaException as e:
                        self.replies.put(e)
                elif cmd == "close":
                    c.close()
                    self.replies.put("ok")
                    return
                msg = c.poll(0.05)
                if msg is not None and msg.error() is None:
                    with self.lock:
                        self.records.append((msg.partition(), msg.offset(), msg.value()))
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
    c = Consumer(consumer_config(bootstrap, group))
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def balanced(members, per_member):
    sets = [m.assigned for m in members]
    union = frozenset().union(*sets)
    return (all(len(s) == per_member for s in sets)
            and len(union) == PARTITIONS
            and sum(len(s) for s in sets) == PARTITIONS)


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_three_members_split_then_take_over(gbroker, topic, assignor):
    create_topic(gbroker.bootstrap, topic)
    group = "g-" + uuid.uuid4().hex[:8]
    extra = {"partition.assignment.strategy": assignor}
    members = [Member(gbroker.bootstrap, group, topic, **extra) for _ in range(3)]
    for m in members:
        m.start()
    try:
        wait_for(lambda: balanced(members, 2), "three members with two partitions each")
        first = [m.assigned for m in members]

        produce(gbroker.bootstrap, topic, 300)
        wait_for(lambda: sum(m.count() for m in members) == 300, "300 records consumed")
        # Each member read only its own partitions.
        for m, parts in zip(members, first):
            assert {p for p, _, _ in m.records} <= parts
        for m in members:
            m.call("commit")
        assert committed(gbroker.bootstrap, group, topic) == {p: 50 for p in range(PARTITIONS)}

        leaver = members.pop()
        leaver.call("close")
        wait_for(lambda: balanced(members, 3), "two members with three partitions each")
        assert frozenset().union(*(m.assigned for m in members)) >= first[2]

        produce(gbroker.bootstrap, topic, 300, start=300)
        wait_for(lambda: sum(m.count() for m in members) + leaver.count() == 600,
                 "600 records consumed")
        for m in members:
            m.call("commit")
        assert committed(gbroker.bootstrap, group, topic) == {p: 100 for p in range(PARTITIONS)}

        seen = [r for m in members + [leaver] for r in m.records]
        assert len(seen) == 600, "a record was consumed twice"
        assert sorted(v for _, _, v in seen) == sorted(f"v{i}".encode() for i in range(600))
        assert len({(p, o) for p, o, _ in seen}) == 600
    finally:
        for m in members:
            if m.is_alive():
                m.call("close")


def test_resume_at_committed_offsets_after_kill(gbroker, topic):
    create_topic(gbroker.bootstrap, topic)
    group = "resume-" + uuid.uuid4().hex[:8]
    produce(gbroker.bootstrap, topic, 600)

    c = Consumer(consumer_config(gbroker.bootstrap, group))
    c.subscribe([topic])
    before = []
    deadline = time.monotonic() + 30
    while len(before) < 300 and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and msg.error() is None:
            before.append((msg.partition(), msg.offset()))
    assert len(before) == 300
    c.commit(asynchronous=False)
    commit_point = {}
    for p, o in before:
        commit_point[p] = max(commit_point.get(p, 0), o + 1)
    # Read on without committing: these must be read again after the restart.
    uncommitted = []
    while len(uncommitted) < 30 and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and msg.error() is None:
            uncommitted.append((msg.partition(), msg.offset()))
    assert len(uncommitted) == 30
    c.close()

    gbroker.kill()
    gbroker.start()

    assert {p: o for p, o in committed(gbroker.bootstrap, group, topic).items() if o >= 0} \
        == commit_point
    c2 = Consumer(consumer_config(gbroker.bootstrap, group))
    c2.subscribe([topic])
    after = []
    deadline = time.monotonic() + 30
    while len(after) < 300 and time.monotonic() < deadline:
        msg = c2.poll(0.2)
        if msg is not None and msg.error() is None:
            after.append((msg.partition(), msg.offset()))
    c2.close()
    assert len(after) == 300, "records lost or re-read beyond the uncommitted ones"
    # Each partition resumes exactly at its committed offset (0 where nothing was committed).
    for p in range(PARTITIONS):
        offsets = [o for q, o in after if q == p]
        assert offsets == list(range(commit_point.get(p, 0), 100))
    assert set(uncommitted) <= set(after)
    assert set(before).isdisjoint(after)


def test_kcat_balanced_consumer_reads_everything_and_commits(gbroker, topic):
    create_topic(gbroker.bootstrap, topic)
    produce(gbroker.bootstrap, topic, 120)
    group = "kcat-" + uuid.uuid4().hex[:8]
    res = subprocess.run(
        ["kcat", "-b", gbroker.bootstrap, "-X", "broker.address.family=v4",
         "-X", "auto.offset.reset=earliest", "-X", "enable.auto.commit=true",
         "-X", "auto.commit.interval.ms=100", "-e", "-q", "-f", "%p %o %s\\n",
         "-G", group, topic],
        capture_output=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    lines = [line.split() for line in res.stdout.decode().splitlines() if line.strip()]
    assert sorted(v for _, _, v in lines) == sorted(f"v{i}" for i in range(120))
    assert committed(gbroker.bootstrap, group, topic) == {p: 20 for p in range(PARTITIONS)}


def test_standalone_assign_commit_with_generation_minus_one(gbroker, topic):
    create_topic(gbroker.bootstrap, topic)
    produce(gbroker.bootstrap, topic, 60)
    group = "standalone-" + uuid.uuid4().hex[:8]
    c = Consumer(consumer_config(gbroker.bootstrap, group))
    try:
        c.assign([TopicPartition(topic, 1, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 10 and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg.offset())
        assert got == list(range(10))
        c.commit(offsets=[TopicPartition(topic, 1, 7, metadata="checkpoint-7")],
                 asynchronous=False)
        (tp,) = c.committed([TopicPartition(topic, 1)], timeout=10)
        assert tp.offset == 7
        assert tp.metadata == "checkpoint-7"
        (other,) = c.committed([TopicPartition(topic, 2)], timeout=10)
        assert other.offset < 0  # nothing committed there
        # A second standalone commit moves it; both are generation -1 commits.
        c.commit(offsets=[TopicPartition(topic, 1, 10)], asynchronous=False)
        (tp,) = c.committed([TopicPartition(topic, 1)], timeout=10)
        assert tp.offset == 10
    finally:
        c.close()


def test_static_member_rejoins_with_its_old_partitions(gbroker, topic):
    create_topic(gbroker.bootstrap, topic)
    group = "static-" + uuid.uuid4().hex[:8]

    def static_member(instance):
        m = Member(gbroker.bootstrap, group, topic)
        m.config["group.instance.id"] = instance
        m.start()
        return m

    a, b = static_member("inst-a"), static_member("inst-b")
    try:
        wait_for(lambda: balanced([a, b], 3), "two static members with three partitions each")
        b_parts = b.assigned
        # A static member leaving on close does not send LeaveGroup; restarting it with the
        # same group.instance.id within the session timeout takes its membership over.
        b.call("close")
        b = static_member("inst-b")
        wait_for(lambda: b.assigned == b_parts, "the restarted static member's old partitions")
        assert len(a.assigned) == 3 and a.assigned.isdisjoint(b.assigned)
        produce(gbroker.bootstrap, topic, 60)
        wait_for(lambda: a.count() + b.count() == 60, "60 records consumed")
        assert {p for p, _, _ in b.records} <= b_parts
    finally:
        for m in (a, b):
            if m.is_alive():
                m.call("close")


def test_admin_client_lists_describes_and_deletes_groups(gbroker, topic):
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka import ConsumerGroupTopicPartitions

    create_topic(gbroker.bootstrap, topic)
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap, "broker.address.family": "v4"})
    live = "live-" + uuid.uuid4().hex[:8]
    parked = "offsets-only-" + uuid.uuid4().hex[:8]

    # A group that only has committed offsets (written by the admin API itself).
    req = ConsumerGroupTopicPartitions(parked, [TopicPartition(topic, 2, 11)])
    admin.alter_consumer_group_offsets([req])[parked].result(30)

    m = Member(gbroker.bootstrap, live, topic)
    m.start()
    try:
        wait_for(lambda: len(m.assigned) == PARTITIONS, "the member's assignment")
        listed = admin.list_consumer_groups().result(30)
        states = {g.group_id: g.state for g in listed.valid}
        assert states[live] == ConsumerGroupState.STABLE
        assert states[parked] == ConsumerGroupState.EMPTY

        desc = admin.describe_consumer_groups([live, parked])
        d = desc[live].result(30)
        assert d.state == ConsumerGroupState.STABLE
        assert d.partition_assignor == "range"
        (member,) = d.members
        assert sorted(tp.partition for tp in member.assignment.topic_partitions) == list(
            range(PARTITIONS)
        )
        assert desc[parked].result(30).state == ConsumerGroupState.EMPTY

        offsets = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(parked, [TopicPartition(topic, 2)])]
        )[parked].result(30)
        assert [(tp.partition, tp.offset) for tp in offsets.topic_partitions] == [(2, 11)]

        # A group with members cannot be deleted; an offsets-only one can.
        futures = admin.delete_consumer_groups([live, parked])
        futures[parked].result(30)
        with pytest.raises(KafkaException) as err:
            futures[live].result(30)
        assert "NON_EMPTY_GROUP" in str(err.value)
        listed = admin.list_consumer_groups().result(30)
        assert parked not in {g.group_id for g in listed.valid}
    finally:
        m.call("close")
