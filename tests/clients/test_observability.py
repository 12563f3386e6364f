"""Issue 14: `waterline exporter` and `waterline lag --watch/--check` against a real broker.

confluent-kafka produces and commits; the exporter's /metrics is scraped and checked value by
value against what was produced and committed; the exporter and `lag --watch` keep running
across a broker restart (errors shown, then values again once the broker is back).
"""

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import running_broker, waterline_bin

SERVING = re.compile(r"^waterline exporter: serving (http://\S+)/metrics")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels)): float} from Prometheus/OpenMetrics text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unparsable metrics line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(metrics, name, **labels):
    return metrics.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def scrape(url, path="/metrics"):
    with urllib.request.urlopen(url + path, timeout=5) as r:
        return r.status, r.read().decode()


def wait_for(what, check, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class Exporter:
    def __init__(self, bootstrap, *extra):
        self.proc = subprocess.Popen(
            [waterline_bin(), "exporter", "--bootstrap-server", bootstrap, "--timeout-ms", "2000",
             "--listen", "127.0.0.1:0", "--interval", "PT0.2S", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        m = SERVING.match(line)
        assert m, f"no serving line: {line!r} {self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.url = m.group(1)
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def metrics(self):
        status, text = scrape(self.url)
        assert status == 200
        return parse_metrics(text)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                assert self.proc.wait(timeout=15) == 0, "".join(self.stderr)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise


def produce(bootstrap, topic, counts):
    p = Producer({"bootstrap.servers": bootstrap})
    for partition, n in counts.items():
        for i in range(n):
            p.produce(topic, value=f"v{i}".encode(), partition=partition)
    assert p.flush(30) == 0


def commit(bootstrap, group, topic, offsets):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                 asynchronous=False)
    finally:
        c.close()


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(30)


def test_exporter_serves_kafka_exporter_metrics_and_survives_a_restart(tmp_path):
    with running_broker(tmp_path, fast_groups=True) as b:
        b.pin_port()
        topic = "t-" + uuid.uuid4().hex[:8]
        other = "skip-" + uuid.uuid4().hex[:8]
        group = "g-" + uuid.uuid4().hex[:8]
        create_topic(b.bootstrap, topic, 2)
        create_topic(b.bootstrap, other, 1)
        produce(b.bootstrap, topic, {0: 10, 1: 7})
        produce(b.bootstrap, other, {0: 3})
        commit(b.bootstrap, group, topic, {0: 4, 1: 7})
        commit(b.bootstrap, "denied-" + group, topic, {0: 1})
        # A live member in another group.
        live = "live-" + uuid.uuid4().hex[:8]
        member = Consumer({"bootstrap.servers": b.bootstrap, "group.id": live,
                           "session.timeout.ms": 6000, "auto.offset.reset": "earliest"})
        member.subscribe([topic])
        wait_for("an assignment", lambda: member.poll(0.2) is not None or member.assignment())

        ex = Exporter(b.bootstrap, "--group-deny", "denied-.*", "--topic-deny", "skip-.*")
        try:
            assert scrape(ex.url, "/healthz")[0] == 200
            m = wait_for("the group's offsets",
                         lambda: (lambda m: m if value(m, "kafka_consumergroup_current_offset",
                                                       consumergroup=group, topic=topic,
                                                       partition=0) is not None
                                  and value(m, "kafka_consumergroup_members", consumergroup=live) == 1
                                  else None)(ex.metrics()))
            assert scrape(ex.url, "/readyz")[0] == 200
            g = dict(consumergroup=group, topic=topic)
            assert value(m, "kafka_consumergroup_current_offset", **g, partition=0) == 4
            assert value(m, "kafka_consumergroup_current_offset", **g, partition=1) == 7
            assert value(m, "kafka_consumergroup_lag", **g, partition=0) == 6
            assert value(m, "kafka_consumergroup_lag", **g, partition=1) == 0
            assert value(m, "kafka_consumergroup_lag_sum", **g) == 6
            assert value(m, "kafka_consumergroup_current_offset_sum", **g) == 11
            assert value(m, "kafka_consumergroup_members", consumergroup=group) == 0
            assert value(m, "kafka_topic_partitions", topic=topic) == 2
            assert value(m, "kafka_topic_partition_current_offset", topic=topic, partition=0) == 10
            assert value(m, "kafka_topic_partition_current_offset", topic=topic, partition=1) == 7
            assert value(m, "kafka_topic_partition_oldest_offset", topic=topic, partition=0) == 0
            assert value(m, "kafka_brokers") == 1
            # Time lag: exact, from the timestamp of the record at offset 4 (produced just now).
            secs = value(m, "kafka_consumergroup_lag_seconds", **g, partition=0, kind="exact")
            assert secs is not None and 0 <= secs < 120, secs
            assert value(m, "kafka_consumergroup_lag_seconds", **g, partition=1, kind="exact") == 0
            # No members and behind: STOP at a look; caught up: OK.
            assert value(m, "kafka_consumergroup_partition_status", **g, partition=0, status="STOP") == 1
            assert value(m, "kafka_consumergroup_partition_status", **g, partition=1, status="OK") == 1
            assert value(m, "kafka_consumergroup_status", consumergroup=group, status="STOP") == 1
            # Filters: the denied group and topic are absent.
            names = {labels for (_, labels) in m}
            assert not any(("consumergroup", "denied-" + group) in l for l in names)
            assert not any(("topic", other) in l for l in names)

            # Broker restart: the exporter keeps serving and reports itself down meanwhile.
            assert b.stop() == 0
            m = wait_for("up 0", lambda: (lambda m: m if value(m, "waterline_exporter_up") == 0
                                          else None)(ex.metrics()))
            assert value(m, "kafka_consumergroup_current_offset", **g, partition=0) == 4, \
                "the last good values stay served"
            b.start()
            commit(b.bootstrap, group, topic, {0: 8})
            m = wait_for("the new commit after the restart",
                         lambda: (lambda m: m if value(m, "kafka_consumergroup_current_offset",
                                                       **g, partition=0) == 8
                                  and value(m, "waterline_exporter_up") == 1 else None)(ex.metrics()),
                         timeout=60)
            assert value(m, "kafka_consumergroup_lag", **g, partition=0) == 2
            assert value(m, "waterline_exporter_poll_errors") >= 1
            assert ex.proc.poll() is None
        finally:
            member.close()
            ex.stop()


def test_exporter_rejects_a_bad_regex_in_one_line():
    r = subprocess.run([waterline_bin(), "exporter", "--group-allow", "("],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("waterline exporter: error: --group-allow '('"), r.stderr


def test_lag_check_watch_streams_and_survives_a_restart(tmp_path):
    with running_broker(tmp_path, fast_groups=True) as b:
        b.pin_port()
        topic = "t-" + uuid.uuid4().hex[:8]
        group = "g-" + uuid.uuid4().hex[:8]
        create_topic(b.bootstrap, topic, 1)
        produce(b.bootstrap, topic, {0: 10})
        commit(b.bootstrap, group, topic, {0: 4})

        def lag(*args, timeout=60):
            return subprocess.run([waterline_bin(), "lag", "--bootstrap-server", b.bootstrap,
                                   "--group", group, *args],
                                  capture_output=True, text=True, timeout=timeout)

        # One look: no members while 6 behind is STOP, not OK.
        r = lag("--output", "json")
        assert r.returncode == 0, r
        p = json.loads(r.stdout)["groups"][0]["partitions"][0]
        assert (p["lag"], p["status"]) == (6, "STOP"), p
        r = lag("--check")
        assert r.returncode == 3, r
        assert "check failed: 1 partition(s) at or past WARN" in r.stderr, r.stderr
        assert lag("--check", "--status", "lost").returncode == 0
        r = lag("--status", "stop")
        assert r.returncode == 2, r

        # CSV under --watch: one header, a TIME column.
        r = lag("--watch", "--interval", "PT0.1S", "--iterations", "3", "--output", "csv")
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        assert lines[0].startswith("TIME,GROUP,TOPIC,PARTITION"), lines
        assert len(lines) == 4 and sum(l.startswith("TIME,") for l in lines) == 1, lines

        # JSON stream across a restart: one object per line, an error line while the broker is
        # down, values again after.
        watch = subprocess.Popen([waterline_bin(), "lag", "--bootstrap-server", b.bootstrap,
                                  "--timeout-ms", "1000", "--group", group, "--watch",
                                  "--interval", "PT0.2S", "--output", "json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        objs = []
        threading.Thread(target=lambda: [objs.append(json.loads(l)) for l in watch.stdout],
                         daemon=True).start()
        try:
            wait_for("a first refresh", lambda: any("groups" in o for o in objs))
            assert b.stop() == 0
            wait_for("an error line", lambda: any("error" in o for o in objs))
            b.start()
            commit(b.bootstrap, group, topic, {0: 9})
            wait_for("the refresh after the restart",
                     lambda: any("groups" in o and o["groups"][0]["partitions"][0]["current_offset"] == 9
                                 for o in objs), timeout=60)
            assert watch.poll() is None, "lag --watch exited"
            assert all("time" in o and "time_ms" in o for o in objs), objs
        finally:
            watch.terminate()
            watch.wait(timeout=15)


def test_broker_metrics_and_health(tmp_path):
    from harness import Broker

    b = Broker(tmp_path / "data", extra_args=["--http-listen", "127.0.0.1:0",
                                              "--auto-create-topics", "false"])
    b.start()
    try:
        line = b.proc.stdout.readline()
        m = re.match(r"^waterline: metrics on (http://\S+)/metrics", line)
        assert m, line
        url = m.group(1)
        assert scrape(url, "/healthz")[0] == 200
        assert scrape(url, "/readyz")[0] == 200
        topic = "t-" + uuid.uuid4().hex[:8]
        group = "g-" + uuid.uuid4().hex[:8]
        create_topic(b.bootstrap, topic, 2)
        produce(b.bootstrap, topic, {0: 10, 1: 7})
        commit(b.bootstrap, group, topic, {0: 4, 1: 7})
        # A member that reads everything (bytes out) and stays in the group.
        live = "live-" + uuid.uuid4().hex[:8]
        member = Consumer({"bootstrap.servers": b.bootstrap, "group.id": live,
                           "auto.offset.reset": "earliest", "enable.auto.commit": False})
        member.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 30
        while got < 17 and time.monotonic() < deadline:
            msg = member.poll(0.2)
            if msg is not None and msg.error() is None:
                got += 1
        assert got == 17
        # An error answer: Metadata for a topic that does not exist (auto-creation is off).
        AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(topic="no-such-topic", timeout=10)

        mm = parse_metrics(scrape(url)[1])
        g = dict(consumergroup=group, topic=topic)
        assert value(mm, "kafka_consumergroup_current_offset", **g, partition=0) == 4
        assert value(mm, "kafka_consumergroup_current_offset", **g, partition=1) == 7
        assert value(mm, "kafka_consumergroup_lag", **g, partition=0) == 6
        assert value(mm, "kafka_consumergroup_lag", **g, partition=1) == 0
        assert value(mm, "kafka_consumergroup_lag_sum", **g) == 6
        assert value(mm, "kafka_consumergroup_members", consumergroup=live) == 1
        assert value(mm, "kafka_consumergroup_members", consumergroup=group) == 0
        assert value(mm, "waterline_groups", state="Stable") >= 1
        assert value(mm, "kafka_topic_partitions", topic=topic) == 2
        assert value(mm, "kafka_topic_partition_current_offset", topic=topic, partition=0) == 10
        assert value(mm, "kafka_topic_partition_current_offset", topic=topic, partition=1) == 7
        assert value(mm, "kafka_topic_partition_oldest_offset", topic=topic, partition=0) == 0
        assert value(mm, "waterline_log_size_bytes", topic=topic, partition=0) > 0
        assert value(mm, "waterline_requests_total", api="Produce") >= 1
        assert value(mm, "waterline_request_duration_seconds_count", api="Produce") >= 1
        assert value(mm, "waterline_request_duration_seconds_count", api="OffsetCommit") >= 1
        assert value(mm, "waterline_request_errors_total", api="Metadata", error_code=3) >= 1
        assert value(mm, "waterline_topic_bytes_in_total", topic=topic) > 17
        assert value(mm, "waterline_topic_bytes_out_total", topic=topic) > 17
        assert value(mm, "waterline_fsync_duration_seconds_count") >= 1
        assert value(mm, "waterline_connections") >= 1
        member.close()
    finally:
        assert b.stop() == 0, b.stderr_text()[-4000:]


def test_dashboard_in_headless_chromium(tmp_path):
    """The exporter's page at / in Debian's Chromium: the group list shows the test group's
    lag, its group page shows the partition, and both update after a commit without a reload.
    Screenshots go to $WATERLINE_ARTIFACTS (default: tests/clients/artifacts)."""
    import os
    from pathlib import Path

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    artifacts = Path(os.environ.get("WATERLINE_ARTIFACTS",
                                    Path(__file__).resolve().parent / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with running_broker(tmp_path, fast_groups=True) as b:
        topic = "t-" + uuid.uuid4().hex[:8]
        group = "dash-" + uuid.uuid4().hex[:8]
        create_topic(b.bootstrap, topic, 1)
        produce(b.bootstrap, topic, {0: 25})
        commit(b.bootstrap, group, topic, {0: 5})
        ex = Exporter(b.bootstrap)
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,800"]:
            opts.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            driver.get(ex.url + "/")

            def group_lag():
                rows = driver.find_elements(By.CSS_SELECTOR, f'tr[data-group="{group}"] td.lag')
                return rows[0].text if rows else None

            wait_for("the group's lag on the page", lambda: group_lag() == "20")
            driver.save_screenshot(str(artifacts / "dashboard-groups.png"))
            driver.find_element(By.LINK_TEXT, group).click()
            sel = f'tr[data-partition="{topic}/0"] td.lag'
            wait_for("the partition row", lambda: [e.text for e in driver.find_elements(By.CSS_SELECTOR, sel)] == ["20"])
            # Live refresh: a commit shows up without reloading the page.
            commit(b.bootstrap, group, topic, {0: 22})
            wait_for("the new lag", lambda: [e.text for e in driver.find_elements(By.CSS_SELECTOR, sel)] == ["3"])
            assert driver.find_elements(By.CSS_SELECTOR, ".card svg"), "no chart"
            wait_for("a chart line", lambda: driver.find_elements(By.CSS_SELECTOR, ".card svg polyline"))
            driver.save_screenshot(str(artifacts / "dashboard-group.png"))
            # A phone-sized window still shows the lag.
            driver.set_window_size(390, 844)
            driver.get(ex.url + "/")
            wait_for("the lag on a small screen", lambda: group_lag() == "3")
            driver.save_screenshot(str(artifacts / "dashboard-phone.png"))
        finally:
            driver.quit()
            ex.stop()
