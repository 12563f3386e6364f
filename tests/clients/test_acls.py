"""ACLs with real clients against a SASL `waterline serve`.

One broker per test with a SASL_PLAINTEXT listener (SCRAM), which turns authorization on, and
an admin user (`--admin-user`, a super user). The admin manages users and ACLs with
confluent-kafka's AdminClient (create_acls, describe_acls, delete_acls) or `waterline acls`;
the tests then act as an ordinary user and check what librdkafka reports: a user without ACLs
sees no topics and cannot produce, consume or commit; literal and prefixed ACLs grant access;
a DENY beats an ALLOW; super users need no ACLs; a transactional id needs WRITE on it; ACLs
survive kill -9; `waterline acls add|list|remove` round-trips.
"""

import os
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from harness import Broker, waterline_bin

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
FAST_GROUPS = """
[groups]
initial_rebalance_delay_ms = 100
min_session_timeout_ms = 1000
"""


def acl_broker(root, super_users=None):
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "waterline.toml"
    cfg.write_text(FAST_GROUPS)
    args = ["--config", str(cfg), "--listener", "SASL_PLAINTEXT://127.0.0.1:0",
            "--admin-user", ADMIN]
    if super_users:
        args += ["--super-users", super_users]
    b = Broker(root / "data", extra_args=args,
               extra_env={"WATERLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    b.start()
    return b


@pytest.fixture
def abroker(tmp_path):
    b = acl_broker(tmp_path)
    try:
        yield b
    finally:
        if b.proc is not None:
            assert b.stop() == 0, b.stderr_text()[-4000:]


def cfg(b, user=ADMIN, password=ADMIN_PASSWORD):
    return {
        "bootstrap.servers": b.listeners["SASL_PLAINTEXT"],
        "broker.address.family": "v4",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": password,
    }


def admin(b):
    """The admin user's AdminClient. Keep it in a variable until its futures are done: a
    collected client destroys its handle and fails them (_DESTROY)."""
    return AdminClient(cfg(b))


def add_user(b, user, password):
    a = admin(b)
    for f in a.alter_user_scram_credentials([
        UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                     password.encode())]).values():
        f.result(10)


def create_topic(b, topic):
    a = admin(b)
    for f in a.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(10)


def allow(principal, rtype, name, op, pattern=ResourcePatternType.LITERAL,
          perm=AclPermissionType.ALLOW):
    return AclBinding(rtype, name, pattern, principal, "*", op, perm)


def create_acls(b, bindings):
    a = admin(b)
    for f in a.create_acls(bindings).values():
        f.result(10)


def produce_errors(c, topic, n=3):
    """Produces n records with acks=all; the delivery errors."""
    errors = []
    p = Producer({**c, "acks": "all", "linger.ms": 5, "message.timeout.ms": 10000,
                  "retries": 0})
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), on_delivery=lambda e, _m: e and errors.append(e))
    p.flush(20)
    return errors


def consume(c, topic, group, n):
    """Consumes n records in `group` from the start and commits; the values."""
    consumer = Consumer({**c, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m.value().decode())
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    consumer.close()
    return got, committed[0].offset


def test_user_without_acls_sees_nothing_and_cannot_produce_consume_or_commit(abroker):
    topic = "t-" + uuid.uuid4().hex[:8]
    create_topic(abroker, topic)
    assert not produce_errors(cfg(abroker), topic)
    add_user(abroker, "alice", "alice-pw")
    alice = cfg(abroker, "alice", "alice-pw")
    # No topics listed.
    alice_admin = AdminClient(alice)
    md = alice_admin.list_topics(timeout=10)
    assert topic not in md.topics and not md.topics, md.topics
    # Produce: TOPIC_AUTHORIZATION_FAILED.
    errors = produce_errors(alice, topic)
    assert errors and all(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors), errors
    # Consume (assigned partition): nothing is read; librdkafka reports the refused group
    # (it fetches the committed offset first) or the refused topic.
    denied = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED}
    c = Consumer({**alice, "group.id": "g-alice", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error():
            seen.add(m.error().code())
        assert m is None or m.error(), "alice read a record without READ"
    assert seen and seen <= denied, seen
    # Commit: refused. Without DESCRIBE on the group FindCoordinator is refused already, and
    # librdkafka fails the commit locally (waiting for a coordinator).
    with pytest.raises(KafkaException):
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    c.close()
    # With DESCRIBE on the group (but not READ) the coordinator is found and OffsetCommit
    # itself answers GROUP_AUTHORIZATION_FAILED.
    create_acls(abroker, [allow("User:alice", ResourceType.GROUP, "g-alice",
                                AclOperation.DESCRIBE)])
    c = Consumer({**alice, "group.id": "g-alice", "enable.auto.commit": False})
    with pytest.raises(KafkaException) as e:
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    assert e.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED, e.value
    c.close()
    # Managing ACLs and users needs the cluster. (confluent-kafka 2.16 resolves a DescribeAcls
    # answered with CLUSTER_AUTHORIZATION_FAILED to an empty list instead of raising; the code
    # itself is checked through `waterline acls` below and in the broker's Rust tests.)
    try:
        seen_acls = alice_admin.describe_acls(
            AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)).result(10)
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e
        seen_acls = []
    assert seen_acls == []
    with pytest.raises(KafkaException) as e:
        for f in alice_admin.create_acls([allow("User:alice", ResourceType.TOPIC, "*",
                                                AclOperation.ALL)]).values():
            f.result(10)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e.value
    futs = alice_admin.describe_user_scram_credentials(["alice"])
    with pytest.raises(KafkaException):
        [f.result(10) for f in futs.values()]
    assert "authorization denied" in abroker.stderr_text()


def test_literal_and_prefixed_acls_grant_access_and_deny_wins(abroker):
    add_user(abroker, "alice", "alice-pw")
    alice = cfg(abroker, "alice", "alice-pw")
    prefix = "orders-" + uuid.uuid4().hex[:6] + "-"
    topic, secret, group = prefix + "eu", prefix + "secret", "g-" + uuid.uuid4().hex[:6]
    for t in (topic, secret):
        create_topic(abroker, t)
    create_acls(abroker, [
        allow("User:alice", ResourceType.TOPIC, prefix, AclOperation.WRITE,
              ResourcePatternType.PREFIXED),
        allow("User:alice", ResourceType.TOPIC, prefix, AclOperation.READ,
              ResourcePatternType.PREFIXED),
        allow("User:alice", ResourceType.GROUP, group, AclOperation.READ),
        allow("User:alice", ResourceType.TOPIC, secret, AclOperation.ALL,
              perm=AclPermissionType.DENY),
    ])
    assert not produce_errors(alice, topic)
    got, committed = consume(alice, topic, group, 3)
    assert got == ["v0", "v1", "v2"] and committed == 3
    md = AdminClient(alice).list_topics(timeout=10)
    assert topic in md.topics and secret not in md.topics, md.topics
    errors = produce_errors(alice, secret)
    assert errors and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors
    # Describe with MATCH finds the prefixed ALLOWs and the literal DENY applying to `secret`.
    a = admin(abroker)
    found = a.describe_acls(AclBindingFilter(
        ResourceType.TOPIC, secret, ResourcePatternType.MATCH, None, None, AclOperation.ANY,
        AclPermissionType.ANY)).result(10)
    assert sorted((a.name, a.operation, a.permission_type) for a in found) == sorted([
        (prefix, AclOperation.WRITE, AclPermissionType.ALLOW),
        (prefix, AclOperation.READ, AclPermissionType.ALLOW),
        (secret, AclOperation.ALL, AclPermissionType.DENY),
    ]), found
    # Deleting the DENY opens the topic; deleting the ALLOWs closes the prefix.
    deleted = a.delete_acls([AclBindingFilter(
        ResourceType.TOPIC, secret, ResourcePatternType.LITERAL, None, None, AclOperation.ANY,
        AclPermissionType.DENY)])
    assert len(list(deleted.values())[0].result(10)) == 1
    assert not produce_errors(alice, secret)
    for f in a.delete_acls([AclBindingFilter(
            ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED, "User:alice", None,
            AclOperation.ANY, AclPermissionType.ANY)]).values():
        assert len(f.result(10)) == 2
    assert produce_errors(alice, topic)


def test_super_users_need_no_acls(tmp_path):
    b = acl_broker(tmp_path, super_users="User:carol;User:ops")
    try:
        add_user(b, "carol", "carol-pw")
        topic = "s-" + uuid.uuid4().hex[:8]
        carol = cfg(b, "carol", "carol-pw")
        assert not produce_errors(carol, topic)  # auto-created
        got, committed = consume(carol, topic, "g-carol", 3)
        assert len(got) == 3 and committed == 3
        # The admin user is a super user too.
        assert not produce_errors(cfg(b), topic)
    finally:
        assert b.stop() == 0, b.stderr_text()[-4000:]


def test_acls_survive_kill_9(tmp_path):
    b = acl_broker(tmp_path)
    try:
        add_user(b, "alice", "alice-pw")
        topic = "k-" + uuid.uuid4().hex[:8]
        create_topic(b, topic)
        create_acls(b, [allow("User:alice", ResourceType.TOPIC, topic, AclOperation.WRITE)])
        b.kill()
        b.start()
        alice = cfg(b, "alice", "alice-pw")
        assert not produce_errors(alice, topic)
        a = admin(b)
        found = a.describe_acls(AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
            AclPermissionType.ANY)).result(10)
        assert [(a.name, a.principal, a.operation) for a in found] == \
            [(topic, "User:alice", AclOperation.WRITE)]
        assert "TOPIC LITERAL" in (b.data_dir / "acls").read_text()
    finally:
        if b.proc is not None:
            assert b.stop() == 0, b.stderr_text()[-4000:]


def waterline(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([waterline_bin(), *args], capture_output=True, text=True, env=e,
                          timeout=60)


def test_waterline_acls_cli_round_trip(abroker, tmp_path):
    props = tmp_path / "client.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        f"sasl.username={ADMIN}\nsasl.password={ADMIN_PASSWORD}\n")
    env = {"WATERLINE_BOOTSTRAP_SERVER": abroker.listeners["SASL_PLAINTEXT"],
           "WATERLINE_COMMAND_CONFIG": str(props)}
    add_user(abroker, "bob", "bob-pw")
    # Created by the admin: creating them would need CREATE, which bob is not given.
    create_topic(abroker, "logs-app")
    create_topic(abroker, "logs-audit")
    r = waterline("acls", "add", "--allow-principal", "User:bob", "--operation", "write",
                  "--operation", "describe", "--topic", "logs-", "--resource-pattern-type",
                  "prefixed", env=env)
    assert r.returncode == 0, r.stderr
    assert "added 2 ACL(s)" in r.stdout
    r = waterline("acls", "add", "--deny-principal", "User:bob", "--operation", "all",
                  "--topic", "logs-audit", env=env)
    assert r.returncode == 0, r.stderr
    r = waterline("acls", "list", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["RESOURCE", "PATTERN", "PRINCIPAL", "HOST", "OPERATION",
                                "PERMISSION"]
    assert ["TOPIC:logs-", "PREFIXED", "User:bob", "*", "WRITE", "ALLOW"] in \
        [line.split() for line in lines], r.stdout
    assert len(lines) == 4, r.stdout
    bob = cfg(abroker, "bob", "bob-pw")
    assert not produce_errors(bob, "logs-app")
    assert produce_errors(bob, "logs-audit")
    r = waterline("acls", "list", "--topic", "logs-audit", "--resource-pattern-type", "match",
                  env=env)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 4, r.stdout
    r = waterline("acls", "remove", "--topic", "logs-", "--resource-pattern-type", "prefixed",
                  env=env)
    assert r.returncode == 0 and "removed 2 ACL(s)" in r.stdout, (r.stdout, r.stderr)
    r = waterline("acls", "list", env=env)
    assert len(r.stdout.splitlines()) == 2, r.stdout
    # Bad arguments: one line, exit 2.
    for args in (["add", "--operation", "read", "--topic", "t"],
                 ["add", "--allow-principal", "bob", "--operation", "read", "--topic", "t"],
                 ["add", "--allow-principal", "User:bob", "--operation", "fly", "--topic", "t"],
                 ["add", "--allow-principal", "User:bob", "--operation", "read"],
                 ["add", "--allow-principal", "User:bob", "--operation", "read", "--topic", "t",
                  "--host", "example.com"]):
        r = waterline("acls", *args, env=env)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    # Without the right to manage ACLs: exit 1, naming the error.
    bad = tmp_path / "bob.properties"
    bad.write_text(props.read_text().replace(f"sasl.username={ADMIN}", "sasl.username=bob")
                   .replace(ADMIN_PASSWORD, "bob-pw").replace("512", "256"))
    r = waterline("acls", "list", "--command-config", str(bad), env=env)
    assert r.returncode == 1 and "CLUSTER_AUTHORIZATION_FAILED" in r.stderr, r.stderr


def test_transactional_id_acls(abroker):
    add_user(abroker, "tina", "tina-pw")
    tina = cfg(abroker, "tina", "tina-pw")
    topic, txn_id = "tx-" + uuid.uuid4().hex[:8], "app-" + uuid.uuid4().hex[:6]
    create_topic(abroker, topic)
    create_acls(abroker, [allow("User:tina", ResourceType.TOPIC, topic, AclOperation.WRITE)])
    # Without WRITE on the transactional id, InitProducerId is refused.
    p = Producer({**tina, "transactional.id": txn_id, "transaction.timeout.ms": 10000})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(10)
    assert e.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, e.value
    # A prefixed ACL on the id grants it; the transaction commits.
    create_acls(abroker, [allow("User:tina", ResourceType.TRANSACTIONAL_ID, "app-",
                                AclOperation.WRITE, ResourcePatternType.PREFIXED)])
    p = Producer({**tina, "transactional.id": txn_id, "transaction.timeout.ms": 10000})
    p.init_transactions(10)
    p.begin_transaction()
    p.produce(topic, value=b"in-txn")
    p.commit_transaction(10)
    assert "authorization denied" in abroker.stderr_text()
