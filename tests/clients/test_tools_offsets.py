"""The operator tools (`waterline offsets|groups|lag`), run as subprocesses against a broker.

Each reset mode moves a real group's offsets and a confluent-kafka consumer in that group, assigned
without explicit offsets, must then start exactly at the new position. Also: clamping, refusal on an
active group, export -> reset -> restore round trips, plan files that go stale, describe and lag
output against what a client committed, and exit code 2 on bad arguments.

One broker serves the whole module; every test uses its own topics and groups.
"""

import csv
import io
import json
import os
import re
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import running_broker, waterline_bin

PARTITIONS = 3
RECORDS = 10  # per partition, before the marker record each check adds
STEP_MS = 60_000  # records of one partition are one minute apart

@pytest.fixture(scope="module")
def tbroker(tmp_path_factory):
    """One broker for the module, with a 100 ms initial rebalance delay; stopped cleanly."""
    with running_broker(tmp_path_factory.mktemp("tools-broker"), fast_groups=True) as b:
        yield b


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wl(broker, *args, timeout=60, env=None):
    """Run the `waterline` binary like an operator would; returns the CompletedProcess.

    Runs in the broker's temp dir, with the per-user data dir (where backups go without
    --backup-dir) there too, so a default-placed backup never lands in the repo or $HOME.
    """
    base = {**os.environ, "XDG_DATA_HOME": str(broker.data_dir.parent / "xdg")}
    base.pop("WATERLINE_BACKUP_DIR", None)
    return subprocess.run(
        [waterline_bin(), *args, "--bootstrap-server", broker.bootstrap, "--timeout-ms", "10000"],
        capture_output=True,
        text=True,
        cwd=broker.data_dir.parent,
        env={**base, **(env or {})},
        timeout=timeout,
    )


def ok(proc):
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def base_config(broker, **extra):
    cfg = {"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4"}
    cfg.update(extra)
    return cfg


def create_topic(broker, partitions=PARTITIONS):
    topic = uid("tt")
    admin = AdminClient(base_config(broker))
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(30)
    return topic


def value(p, i):
    return f"p{p}-r{i}".encode()


def produce(broker, topic, base_ms, partitions=PARTITIONS, count=RECORDS, start=0):
    """Record i of partition p has value `p<p>-r<i>` and timestamp base_ms + i * STEP_MS + p.

    Offsets equal i when the partition starts empty, so a value names its own offset.
    """
    errors = []
    prod = Producer(base_config(broker, acks="all", **{"linger.ms": 5}))
    for i in range(start, start + count):
        for p in range(partitions):
            prod.produce(topic, value=value(p, i), partition=p,
                         timestamp=base_ms + i * STEP_MS + p,
                         on_delivery=lambda err, _m: err and errors.append(err))
    assert prod.flush(30) == 0
    assert not errors, errors


def topic_with_records(broker, base_ms=None, partitions=PARTITIONS):
    """A new topic with RECORDS records per partition; returns (topic, base_ms)."""
    if base_ms is None:
        # Far enough in the past that --by-duration windows fall between records.
        base_ms = int(time.time() * 1000) - 20 * STEP_MS - STEP_MS // 2
    topic = create_topic(broker, partitions)
    produce(broker, topic, base_ms, partitions)
    return topic, base_ms


def commit(broker, group, topic, offsets):
    """Commit {partition: offset} as a standalone (assign-style) client of `group`."""
    c = Consumer(base_config(broker, **{"group.id": group, "enable.auto.commit": False}))
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                 asynchronous=False)
    finally:
        c.close()


def committed(broker, group, topic, partitions=PARTITIONS):
    """{partition: committed offset}, with None where there is no commit."""
    c = Consumer(base_config(broker, **{"group.id": group, "enable.auto.commit": False}))
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in tps}
    finally:
        c.close()


def first_positions(broker, group, topic, partitions=PARTITIONS, subscribe=False, timeout=20.0):
    """Where a consumer of `group` starts on each partition: the offset of its first record.

    Assigns (or subscribes) without explicit offsets, so librdkafka starts from the committed
    position (and fails rather than guessing where there is none). Checks each record's value
    against its offset. Commits nothing.
    """
    c = Consumer(base_config(broker, **{
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
    }))
    first = {}
    try:
        if subscribe:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, p) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while len(first) < partitions and time.monotonic() < deadline:
            msg = c.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            if msg.partition() not in first:
                assert msg.value() == value(msg.partition(), msg.offset())
                first[msg.partition()] = msg.offset()
    finally:
        c.close()
    return first


def assert_starts_at(broker, group, topic, expected, partitions=PARTITIONS, subscribe=False):
    """A consumer in `group` gets, as its first record of each partition, the one at `expected`.

    Adds one marker record per partition (at offset RECORDS) first, so a position at the old log
    end also has a record to deliver. Call at most once per topic.
    """
    produce(broker, topic, int(time.time() * 1000), partitions, count=1, start=RECORDS)
    assert first_positions(broker, group, topic, partitions, subscribe) == expected


def iso(ms, tz=timezone.utc):
    dt = datetime.fromtimestamp(ms / 1000, tz)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"
    off = dt.utcoffset()
    if off == timedelta(0):
        return text + "Z"
    sign = "+" if off >= timedelta(0) else "-"
    minutes = abs(int(off.total_seconds())) // 60
    return text + f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def backup_path(stderr):
    m = re.search(r"--from-file (\S+) --execute", stderr)
    assert m, f"no restore hint in stderr:\n{stderr}"
    return m.group(1)


# ---------------------------------------------------------------------------------------------
# Every reset mode, checked by consuming.

START = {0: 3, 1: 5, 2: 7}


def reset_cases():
    """(id, start commits, args builder(topic, base_ms, tmp_path, broker), expected positions)."""

    def plain(*extra):
        return lambda topic, _base, _tmp, _b: ["--topic", topic, *extra]

    def datetime_args(shift_ms, tz):
        return lambda topic, base, _tmp, _b: ["--topic", topic,
                                              "--to-datetime", iso(base + shift_ms, tz)]

    def to_group(topic, _base, _tmp, broker):
        other = uid("g-src")
        commit(broker, other, topic, {0: 1, 1: 9, 2: 4})
        return ["--topic", topic, "--to-group", other]

    def from_file(topic, _base, tmp, _b):
        f = tmp / "offsets.csv"
        f.write_text(f"{topic},0,2\n{topic},1,0\n{topic},2,8\n")
        return ["--from-file", str(f)]

    plus2 = timezone(timedelta(hours=2))
    return [
        ("to-earliest", START, plain("--to-earliest"), {0: 0, 1: 0, 2: 0}),
        ("to-latest", START, plain("--to-latest"), {0: 10, 1: 10, 2: 10}),
        # No commit on partition 2: --to-current takes the log end there.
        ("to-current", {0: 3, 1: 5}, plain("--to-current"), {0: 3, 1: 5, 2: 10}),
        ("to-offset", START, plain("--to-offset", "4"), {0: 4, 1: 4, 2: 4}),
        ("shift-by-back", START, plain("--shift-by", "-2"), {0: 1, 1: 3, 2: 5}),
        ("shift-by-forward", START, plain("--shift-by", "2"), {0: 5, 1: 7, 2: 9}),
        # Exactly record 4's timestamp on partition 0: at-or-after includes it; partitions 1
        # and 2 are 1 and 2 ms later, so record 4 is also their first at or after.
        ("to-datetime-exact", START, datetime_args(4 * STEP_MS, timezone.utc), {0: 4, 1: 4, 2: 4}),
        # One ms after partition 1's record 4: partitions 0 and 1 move to 5, partition 2 stays 4.
        ("to-datetime-zone", START, datetime_args(4 * STEP_MS + 2, plus2), {0: 5, 1: 5, 2: 4}),
        # After the last record: the log end.
        ("to-datetime-after-last", START, datetime_args(RECORDS * STEP_MS, timezone.utc),
         {0: 10, 1: 10, 2: 10}),
        # Records are at now-20.5 min .. now-11.5 min: now-15 min falls between records 5 and 6.
        ("by-duration", START, plain("--by-duration", "PT15M"), {0: 6, 1: 6, 2: 6}),
        ("to-group", START, to_group, {0: 1, 1: 9, 2: 4}),
        ("from-file", START, from_file, {0: 2, 1: 0, 2: 8}),
    ]


@pytest.mark.parametrize("start,build,expected",
                         [c[1:] for c in reset_cases()], ids=[c[0] for c in reset_cases()])
def test_reset_mode_moves_consumer(tbroker, tmp_path, start, build, expected):
    topic, base = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, start)
    args = build(topic, base, tmp_path, tbroker)

    # The default is a dry run: the plan is printed, nothing moves.
    dry = ok(wl(tbroker, "offsets", "reset", "--group", group, *args, "--output", "json"))
    plan = json.loads(dry.stdout)
    assert {r["partition"]: r["new_offset"] for r in plan["partitions"]} == expected
    assert committed(tbroker, group, topic) == {p: start.get(p) for p in range(PARTITIONS)}
    # --export prints the same plan as topic,partition,offset lines.
    export = ok(wl(tbroker, "offsets", "reset", "--group", group, *args, "--export")).stdout
    assert sorted(export.splitlines()) == sorted(f"{topic},{p},{o}" for p, o in expected.items())

    ok(wl(tbroker, "offsets", "reset", "--group", group, *args, "--execute",
          "--backup-dir", str(tmp_path)))
    assert committed(tbroker, group, topic) == expected
    assert_starts_at(tbroker, group, topic, expected)


def test_reset_of_listed_partitions_leaves_the_others(tbroker, tmp_path):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    r = ok(wl(tbroker, "offsets", "reset", "--group", group, "--topic", f"{topic}:0,2",
              "--to-offset", "8", "--execute", "--backup-dir", str(tmp_path), "--output", "json"))
    assert sorted(row["partition"] for row in json.loads(r.stdout)["partitions"]) == [0, 2]
    assert_starts_at(tbroker, group, topic, {0: 8, 1: 5, 2: 8})


@pytest.mark.parametrize("tz", ["IST-5:30", "UTC0"])
def test_to_datetime_without_zone_uses_local_time(tbroker, tmp_path, tz):
    """A zone-less --to-datetime is local time (TZ as a POSIX rule, so no tzdata is needed)."""
    topic, base = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    offset = timedelta(hours=5, minutes=30) if tz.startswith("IST") else timedelta(0)
    # Partition 1's record 3, written as local wall-clock time without a zone.
    local = iso(base + 3 * STEP_MS + 1, timezone(offset))
    local = local[:-1] if local.endswith("Z") else local[:-6]
    ok(wl(tbroker, "offsets", "reset", "--group", group, "--topic", topic, "--to-datetime", local,
          "--execute", "--backup-dir", str(tmp_path), env={"TZ": tz}))
    assert_starts_at(tbroker, group, topic, {0: 4, 1: 3, 2: 3})


def test_offset_beyond_log_end_is_clamped_with_warning(tbroker, tmp_path):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    args = ["offsets", "reset", "--group", group, "--topic", topic, "--to-offset", "1000"]

    def stderr_warnings(r):
        # Warnings are diagnostics: one line each on stderr, never mixed into stdout.
        assert "Warning" not in r.stdout, r.stdout
        warnings = [line for line in r.stderr.splitlines() if line.startswith("Warning:")]
        assert len(warnings) == PARTITIONS, r.stderr
        for p in range(PARTITIONS):
            assert any(f"partition {p}:" in w and "1000" in w and "log end" in w and "10" in w
                       for w in warnings), warnings
        return warnings

    # Dry runs in every output mode keep the warnings.
    for extra in (["--export"], ["--output", "csv"]):
        r = ok(wl(tbroker, *args, *extra))
        stderr_warnings(r)
        assert sorted(r.stdout.splitlines()) == [f"{topic},{p},10" for p in range(PARTITIONS)]
    r = ok(wl(tbroker, *args, "--output", "json"))
    warnings = stderr_warnings(r)
    assert ["Warning: " + w for w in json.loads(r.stdout)["warnings"]] == warnings
    r = ok(wl(tbroker, *args, "--execute", "--backup-dir", str(tmp_path)))
    stderr_warnings(r)
    assert_starts_at(tbroker, group, topic, {0: 10, 1: 10, 2: 10})


def test_from_file_offset_beyond_log_end_is_clamped(tbroker, tmp_path):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    f = tmp_path / "offsets.csv"
    f.write_text(f"{topic},0,1\n{topic},1,55\n")
    r = ok(wl(tbroker, "offsets", "reset", "--group", group, "--from-file", str(f),
              "--execute", "--backup-dir", str(tmp_path)))
    assert "Warning" not in r.stdout, r.stdout
    warnings = [line for line in r.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "partition 1:" in warnings[0] and "55" in warnings[0], warnings
    # Partition 2 is not in the file and keeps its offset.
    assert_starts_at(tbroker, group, topic, {0: 1, 1: 10, 2: 7})


def test_shift_before_log_start_is_clamped_with_warning(tbroker, tmp_path):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    r = ok(wl(tbroker, "offsets", "reset", "--group", group, "--topic", topic,
              "--shift-by", "-5", "--execute", "--backup-dir", str(tmp_path)))
    assert "Warning" not in r.stdout, r.stdout
    warnings = [line for line in r.stderr.splitlines() if line.startswith("Warning:")]
    # Only partition 0 (3 - 5 < 0) is clamped.
    assert len(warnings) == 1 and "partition 0:" in warnings[0] and "log start" in warnings[0], \
        warnings
    assert_starts_at(tbroker, group, topic, {0: 0, 1: 0, 2: 2})


# ---------------------------------------------------------------------------------------------
# Refusal on an active group.


class Member(threading.Thread):
    """A subscribe() consumer polling on its own thread until stopped."""

    def __init__(self, broker, group, topics, **extra):
        super().__init__(daemon=True)
        self.config = base_config(broker, **{
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 300,
            **extra,
        })
        self.topics = topics
        self.stopping = threading.Event()
        self.assigned = frozenset()
        self.pending_commit = None
        self.commit_done = threading.Event()
        self.error = None

    def run(self):
        c = Consumer(self.config)
        try:
            c.subscribe(self.topics)
            while not self.stopping.is_set():
                c.poll(0.05)
                self.assigned = frozenset((tp.topic, tp.partition) for tp in c.assignment())
                if self.pending_commit is not None:
                    c.commit(offsets=self.pending_commit, asynchronous=False)
                    self.pending_commit = None
                    self.commit_done.set()
        except Exception as e:  # reported by stop()
            self.error = e
        finally:
            c.close()

    def commit(self, tps):
        self.commit_done.clear()
        self.pending_commit = tps
        assert self.commit_done.wait(30), f"commit did not finish: {self.error!r}"

    def wait_assigned(self, n, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.assigned) == n:
                return
            time.sleep(0.05)
        raise AssertionError(f"member has {sorted(self.assigned)}, expected {n} partitions")

    def stop(self):
        self.stopping.set()
        self.join(30)
        assert not self.is_alive()
        assert self.error is None, repr(self.error)


@pytest.mark.parametrize("how", ["mode", "from-file", "plan"])
def test_reset_refuses_active_group(tbroker, tmp_path, how):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    if how == "mode":
        args = ["--topic", topic, "--to-earliest"]
    elif how == "from-file":
        f = tmp_path / "offsets.csv"
        f.write_text("".join(f"{topic},{p},0\n" for p in range(PARTITIONS)))
        args = ["--from-file", str(f)]
    else:
        # Written while the group is empty; the plan's offsets still match when it is applied.
        plan = tmp_path / "reset.plan"
        ok(wl(tbroker, "offsets", "reset", "--group", group, "--topic", topic, "--to-earliest",
              "--plan-out", str(plan)))
        args = ["--plan", str(plan)]
    backups = tmp_path / "backups"
    backups.mkdir()
    m = Member(tbroker, group, [topic])
    m.start()
    try:
        m.wait_assigned(PARTITIONS)
        r = wl(tbroker, "offsets", "reset", "--group", group, *args, "--execute",
               "--backup-dir", str(backups))
        assert r.returncode != 0, r.stdout + r.stderr
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and group in err[0] and "Stable" in err[0], r.stderr
        assert committed(tbroker, group, topic) == START
        assert not list(backups.iterdir()), "a refused reset wrote a backup"
    finally:
        m.stop()
    # Once the member has left, the same reset goes through.
    ok(wl(tbroker, "offsets", "reset", "--group", group, *args, "--execute",
          "--backup-dir", str(backups)))
    assert committed(tbroker, group, topic) == {0: 0, 1: 0, 2: 0}


# ---------------------------------------------------------------------------------------------
# Backups and plans.


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_reset_restore_round_trips(tbroker, tmp_path, fmt):
    t1, _ = topic_with_records(tbroker)
    t2, _ = topic_with_records(tbroker, partitions=2)
    group = uid("g")
    commit(tbroker, group, t1, START)
    commit(tbroker, group, t2, {0: 9, 1: 1})
    before = ok(wl(tbroker, "offsets", "export", "--group", group)).stdout
    lines = set(before.splitlines())
    assert lines == {f"{t1},0,3", f"{t1},1,5", f"{t1},2,7", f"{t2},0,9", f"{t2},1,1"}

    r = ok(wl(tbroker, "offsets", "reset", "--group", group, "--all-topics", "--to-latest",
              "--execute", "--backup-dir", str(tmp_path), "--backup-format", fmt))
    backup = backup_path(r.stderr)
    assert backup.endswith("." + fmt) and backup.startswith(str(tmp_path))
    assert committed(tbroker, group, t1) == {0: 10, 1: 10, 2: 10}
    assert committed(tbroker, group, t2, 2) == {0: 10, 1: 10}

    ok(wl(tbroker, "offsets", "reset", "--group", group, "--from-file", backup, "--execute",
          "--backup-dir", str(tmp_path)))
    assert ok(wl(tbroker, "offsets", "export", "--group", group)).stdout == before
    assert_starts_at(tbroker, group, t1, START, subscribe=True)


def test_plan_applies_only_if_offsets_unchanged(tbroker, tmp_path):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    stale = tmp_path / "stale.plan"
    ok(wl(tbroker, "offsets", "reset", "--group", group, "--topic", topic, "--to-earliest",
          "--dry-run", "--plan-out", str(stale)))
    assert stale.exists()
    assert committed(tbroker, group, topic) == START, "a dry run moved offsets"

    # The group moves on after the plan was written: the plan must not apply.
    moved = {0: 3, 1: 6, 2: 7}
    commit(tbroker, group, topic, {1: 6})
    r = wl(tbroker, "offsets", "reset", "--group", group, "--execute", "--plan", str(stale),
           "--backup-dir", str(tmp_path))
    assert r.returncode != 0, r.stdout + r.stderr
    assert group in r.stderr and "changed" in r.stderr, r.stderr
    assert committed(tbroker, group, topic) == moved

    fresh = tmp_path / "fresh.plan"
    ok(wl(tbroker, "offsets", "reset", "--group", group, "--topic", topic, "--to-earliest",
          "--dry-run", "--plan-out", str(fresh)))
    ok(wl(tbroker, "offsets", "reset", "--group", group, "--execute", "--plan", str(fresh),
          "--backup-dir", str(tmp_path)))
    assert_starts_at(tbroker, group, topic, {0: 0, 1: 0, 2: 0})


# ---------------------------------------------------------------------------------------------
# describe and lag output.

TIME_LAG = re.compile(
    r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s|(?P<ms>\d+)ms)?$"
)


def time_lag_ms(text):
    """`1d2h3m4.5s`, `53.022s`, `377ms`, `0s` -> milliseconds; `-` -> None."""
    if text == "-":
        return None
    m = TIME_LAG.match(text)
    assert m and text, f"unparseable time lag {text!r}"
    total = 0.0
    for key, scale in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        if m.group(key):
            total += float(m.group(key)) * scale
    return round(total)


def parse_table(text):
    """Rows of an aligned table as dicts, sliced by the header's column starts."""
    lines = [line for line in text.splitlines() if line.strip()]
    header_at = next(i for i, line in enumerate(lines) if line.startswith("GROUP "))
    header = lines[header_at]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for line in lines[header_at + 1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(names, cells)))
    return rows


def opt_int(text):
    return None if text in ("-", "") else int(text)


def table_view(rows):
    """The offset columns of describe/lag table or csv rows, keyed by (topic, partition)."""
    return {
        (r["TOPIC"], int(r["PARTITION"])): (
            opt_int(r["CURRENT-OFFSET"]), int(r["LOG-END-OFFSET"]), opt_int(r["LAG"]),
        )
        for r in rows
    }


def json_view(partitions):
    return {
        (p["topic"], p["partition"]): (p["current_offset"], p["log_end_offset"], p["lag"])
        for p in partitions
    }


def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_describe_matches_client_commits(tbroker):
    assigned_topic, _ = topic_with_records(tbroker, partitions=4)
    other_topic, _ = topic_with_records(tbroker, partitions=2)
    group = uid("g")
    # Committed before the member joins, for a topic the member never subscribes to.
    commit(tbroker, group, other_topic, {1: 6})
    m = Member(tbroker, group, [assigned_topic], **{"client.id": "tools-test"})
    m.start()
    try:
        m.wait_assigned(4)
        # Partitions 0 and 1 get commits from the member; 2 and 3 have none.
        m.commit([TopicPartition(assigned_topic, 0, 3), TopicPartition(assigned_topic, 1, 10)])
        want = {}
        for topic, n in ((assigned_topic, 4), (other_topic, 2)):
            for p, off in committed(tbroker, group, topic, n).items():
                if topic == other_topic and off is None:
                    continue  # neither assigned nor committed: not the group's partition
                want[(topic, p)] = (off, RECORDS, None if off is None else RECORDS - off)
        assert want[(assigned_topic, 0)] == (3, 10, 7)
        assert want[(other_topic, 1)] == (6, 10, 4)

        table = ok(wl(tbroker, "groups", "describe", "--group", group))
        rows = parse_table(table.stdout)
        assert table_view(rows) == want, table.stdout
        for r in rows:
            owned = r["TOPIC"] == assigned_topic
            assert r["GROUP"] == group
            assert (r["CONSUMER-ID"] != "-") == owned, table.stdout
            assert r["CLIENT-ID"] == ("tools-test" if owned else "-"), table.stdout
            tl = time_lag_ms(r["TIME-LAG"])
            assert (tl is None) == (r["CURRENT-OFFSET"] == "-"), table.stdout
            if r["LAG"] == "0":
                assert tl == 0, table.stdout

        doc = json.loads(ok(wl(tbroker, "groups", "describe", "--group", group,
                               "--output", "json")).stdout)
        (g,) = doc["groups"]
        assert g["group"] == group and g["state"] == "Stable"
        assert json_view(g["partitions"]) == want
        owners = {(p["topic"], p["partition"]): p["consumer_id"] for p in g["partitions"]}
        assert {k for k, v in owners.items() if v is not None} == set(m.assigned)
        (member,) = g["members"]
        assert {(a["topic"], a["partition"]) for a in member["assignment"]} == set(m.assigned)
        # Time lags agree with the table's (both measured against the same records).
        json_lags = {(p["topic"], p["partition"]): p["time_lag_ms"] for p in g["partitions"]}
        for r in rows:
            t = time_lag_ms(r["TIME-LAG"])
            j = json_lags[(r["TOPIC"], int(r["PARTITION"]))]
            assert (t is None) == (j is None)
            if t is not None:
                assert abs(t - j) < 10_000, (r, j)

        csv_out = ok(wl(tbroker, "groups", "describe", "--group", group, "--output", "csv"))
        assert table_view(csv_rows(csv_out.stdout)) == want, csv_out.stdout
    finally:
        m.stop()


def test_describe_of_an_empty_group_lists_committed_partitions(tbroker):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, {0: 2, 2: 10})
    r = ok(wl(tbroker, "groups", "describe", "--group", group))
    assert group in r.stdout and "no active members" in r.stdout
    assert table_view(parse_table(r.stdout)) == {
        (topic, 0): (2, 10, 8),
        (topic, 2): (10, 10, 0),
    }


def test_lag_in_records_and_time(tbroker):
    now = int(time.time() * 1000)
    base = now - 30 * STEP_MS  # record i at now - 30 min + i min (+ p ms)
    topic, _ = topic_with_records(tbroker, base_ms=base)
    group = uid("g")
    # Partition 0 idle and caught up; partition 1 behind by 6 records; partition 2 by 1.
    commit(tbroker, group, topic, {0: 10, 1: 4, 2: 9})

    before = int(time.time() * 1000)
    table = ok(wl(tbroker, "lag", "--group", group))
    after = int(time.time() * 1000)
    rows = {int(r["PARTITION"]): r for r in parse_table(table.stdout)}
    assert set(rows) == {0, 1, 2}, table.stdout
    assert [int(rows[p]["LAG"]) for p in range(3)] == [0, 6, 1]
    assert time_lag_ms(rows[0]["TIME-LAG"]) == 0, table.stdout
    # Time lag = now - timestamp of the first unconsumed record.
    for p, off in ((1, 4), (2, 9)):
        ts = base + off * STEP_MS + p
        lag = time_lag_ms(rows[p]["TIME-LAG"])
        assert before - ts - 1 <= lag <= after - ts + 1, (p, rows[p]["TIME-LAG"])

    doc = json.loads(ok(wl(tbroker, "lag", "--group", group, "--output", "json")).stdout)
    (g,) = doc["groups"]
    parts = {p["partition"]: p for p in g["partitions"]}
    assert [parts[p]["lag"] for p in range(3)] == [0, 6, 1]
    assert parts[0]["time_lag_ms"] == 0
    assert parts[1]["time_lag_ms"] >= 26 * STEP_MS


def test_lag_of_a_group_that_does_not_exist_fails_like_describe(tbroker):
    group = uid("nosuch")
    for args in (["lag", "--group", group], ["lag", "--group", group, "--output", "json"],
                 ["groups", "describe", "--group", group]):
        r = wl(tbroker, *args)
        assert r.returncode == 1, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"'{group}' does not exist" in lines[0], r.stderr
        assert "OK" not in r.stdout, r.stdout


def listed(broker):
    doc = json.loads(ok(wl(broker, "groups", "list", "--output", "json")).stdout)
    return {g["group"]: g["state"] for g in doc["groups"]}


def test_list_and_delete_offsets_and_groups(tbroker):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    m = Member(tbroker, group, [topic])
    m.start()
    try:
        m.wait_assigned(PARTITIONS)
        assert listed(tbroker)[group] == "Stable"
        # An active group cannot be deleted.
        r = wl(tbroker, "groups", "delete", "--group", group)
        assert r.returncode != 0 and group in r.stderr, r.stdout + r.stderr
        assert committed(tbroker, group, topic) == START
    finally:
        m.stop()
    assert listed(tbroker)[group] == "Empty"

    # A dry run by default; --execute deletes, after a backup of what it deletes.
    dry = ok(wl(tbroker, "offsets", "delete", "--group", group, "--topic", f"{topic}:1"))
    assert "Dry run" in dry.stderr and f"{topic}  1" in dry.stdout, dry.stdout + dry.stderr
    assert committed(tbroker, group, topic) == START
    r = ok(wl(tbroker, "offsets", "delete", "--group", group, "--topic", f"{topic}:1",
              "--execute"))
    backup = re.search(r"Backup of the offsets being deleted: (\S+)", r.stderr).group(1)
    assert backup.startswith(str(tbroker.data_dir.parent / "xdg" / "waterline" / "backups"))
    assert open(backup).read() == f"{topic},1,5\n"
    assert committed(tbroker, group, topic) == {0: 3, 1: None, 2: 7}
    assert ok(wl(tbroker, "offsets", "export", "--group", group)).stdout.splitlines() == [
        f"{topic},0,3", f"{topic},2,7"]

    ok(wl(tbroker, "groups", "delete", "--group", group))
    assert group not in listed(tbroker)
    assert committed(tbroker, group, topic) == {0: None, 1: None, 2: None}


def test_list_state_filter_is_validated_case_insensitively(tbroker):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    r = wl(tbroker, "groups", "list", "--state", "Bogus")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Bogus" in lines[0], r.stderr
    for state in ("Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"):
        assert state in lines[0], lines[0]
    assert r.stdout == ""
    doc = json.loads(ok(wl(tbroker, "groups", "list", "--state", "eMPTY", "--output",
                          "json")).stdout)
    states = {g["group"]: g["state"] for g in doc["groups"]}
    assert states.get(group) == "Empty" and set(states.values()) == {"Empty"}, states


# ---------------------------------------------------------------------------------------------
# Bad arguments: exit code 2 and one line on stderr.


def bad_arg_cases():
    return [
        ("unknown-topic", lambda t: ["--topic", "no-such-" + t, "--to-earliest"], "no-such-"),
        ("malformed-datetime", lambda t: ["--topic", t, "--to-datetime", "2024-13-45T99:00"],
         "2024-13-45T99:00"),
        ("malformed-duration", lambda t: ["--topic", t, "--by-duration", "15 minutes"],
         "15 minutes"),
        ("no-mode", lambda t: ["--topic", t], "mode"),
        ("two-modes", lambda t: ["--topic", t, "--to-earliest", "--shift-by", "1"], "--shift-by"),
    ]


@pytest.mark.parametrize("build,needle", [c[1:] for c in bad_arg_cases()],
                         ids=[c[0] for c in bad_arg_cases()])
def test_bad_arguments_exit_2_with_one_line(tbroker, tmp_path, build, needle):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    for extra in ([], ["--execute", "--backup-dir", str(tmp_path)]):
        r = wl(tbroker, "offsets", "reset", "--group", group, *build(topic), *extra)
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], r.stderr
        assert committed(tbroker, group, topic) == START


@pytest.mark.parametrize("args,needle", [
    (["groups", "describe"], "--group"),
    (["lag", "--window", "5 minutes"], "5 minutes"),
    (["offsets", "reset", "--topic", "t", "--to-earliest"], "--group"),
    (["offsets", "reset", "--group", "g", "--to-earliest"], "--topic"),
    (["offsets", "reset", "--group", "g", "--all-topics", "--topic", "t", "--to-earliest"],
     "--all-topics"),
    (["offsets", "export", "--group", "g", "--topic", "t:x"], "'x'"),
], ids=["describe-no-group", "lag-bad-window", "reset-no-group", "reset-no-partitions",
        "reset-topic-and-all-topics", "export-bad-partition"])
def test_other_bad_arguments_exit_2_with_one_line(tbroker, args, needle):
    r = wl(tbroker, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert r.stdout == ""


def test_partition_beyond_topic_exits_2(tbroker):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    r = wl(tbroker, "offsets", "reset", "--group", group, "--topic", f"{topic}:{PARTITIONS}",
           "--to-earliest", "--execute")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and topic in lines[0] and f"partition {PARTITIONS}" in lines[0]
    assert committed(tbroker, group, topic) == START


def from_file_cases():
    """(id, file text for a topic, error text expected after the file name, for a topic)."""
    return [
        ("malformed-line", lambda t: f"{t},0,1\n{t},zero,1\n",
         lambda t: "line 2: partition 'zero'"),
        ("unknown-topic", lambda t: f"{t},0,1\nno-such-{t},0,1\n",
         lambda t: f"line 2: unknown topic 'no-such-{t}'"),
        # Blank lines count: the bad partition is on line 3.
        ("partition-out-of-range", lambda t: f"{t},0,1\n\n{t},{PARTITIONS},1\n",
         lambda t: f"line 3: topic '{t}' has no partition {PARTITIONS}"),
        ("missing-file", None, lambda t: "No such file"),
    ]


@pytest.mark.parametrize("text,needle", [c[1:] for c in from_file_cases()],
                         ids=[c[0] for c in from_file_cases()])
def test_from_file_problems_exit_2_naming_file_and_line(tbroker, tmp_path, text, needle):
    topic, _ = topic_with_records(tbroker)
    group = uid("g")
    commit(tbroker, group, topic, START)
    f = tmp_path / "offsets.csv"
    if text is not None:
        f.write_text(text(topic))
    for extra in ([], ["--execute", "--backup-dir", str(tmp_path)]):
        r = wl(tbroker, "offsets", "reset", "--group", group, "--from-file", str(f), *extra)
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{f}: " in lines[0] and needle(topic) in lines[0], r.stderr
        assert r.stdout == ""
    assert committed(tbroker, group, topic) == START


@pytest.mark.parametrize("text", [None, "not json", '{"format": "waterline-reset-plan"}'],
                         ids=["missing", "not-json", "incomplete"])
def test_bad_plan_file_exits_2_naming_the_file(tbroker, tmp_path, text):
    plan = tmp_path / "plan.json"
    if text is not None:
        plan.write_text(text)
    r = wl(tbroker, "offsets", "reset", "--execute", "--plan", str(plan),
           "--backup-dir", str(tmp_path))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(plan) in lines[0], r.stderr
