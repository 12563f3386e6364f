"""TLS and SASL with real clients against `waterline serve`.

One broker per test with four listeners (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), a
certificate authority, server and client certificates generated here with the `openssl` CLI,
and an admin user created at start (`--admin-user`, WATERLINE_ADMIN_PASSWORD). confluent-kafka
(librdkafka), kafka-python and kcat produce with acks=all, consume in a group and commit over
SSL, SASL_PLAINTEXT and SASL_SSL with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN; mutual TLS gives
the certificate subject as the principal; wrong passwords and unknown users are refused (and
the refusal is delayed and logged); credentials made with AlterUserScramCredentials survive
kill -9; malformed and misdirected connections are closed with a log line.
"""

import signal
import socket
import ssl
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from harness import Broker

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
FAST_GROUPS = """
[groups]
initial_rebalance_delay_ms = 100
min_session_timeout_ms = 1000
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all P-256."""
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Waterline Test CA", cwd=d)
    (d / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, subj in [("server", "/CN=localhost"), ("client", "/O=Waterline Tests/CN=client-1")]:
        openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subj, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                "-out", f"{name}.pem", cwd=d)
    return d


def secure_broker(root, certs, mtls=False, mechanisms=None):
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "waterline.toml"
    cfg.write_text(FAST_GROUPS)
    args = [
        "--config", str(cfg),
        "--listener", "SSL://127.0.0.1:0",
        "--listener", "SASL_PLAINTEXT://127.0.0.1:0",
        "--listener", "SASL_SSL://127.0.0.1:0",
        "--tls-cert", str(certs / "server.pem"),
        "--tls-key", str(certs / "server.key"),
        "--admin-user", ADMIN,
    ]
    if mtls:
        args += ["--tls-client-ca", str(certs / "ca.pem")]
    if mechanisms:
        args += ["--sasl-mechanisms", mechanisms]
    b = Broker(root / "data", extra_args=args,
               extra_env={"WATERLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    b.start()
    return b


@pytest.fixture
def sbroker(tmp_path, certs):
    b = secure_broker(tmp_path, certs)
    try:
        yield b
    finally:
        if b.proc is not None:
            assert b.stop() == 0, b.stderr_text()[-4000:]


def client_config(b, certs, protocol, mechanism=None, user=ADMIN, password=ADMIN_PASSWORD,
                  client_cert=False):
    cfg = {
        "bootstrap.servers": b.listeners[protocol],
        "broker.address.family": "v4",
        "security.protocol": protocol,
    }
    if "SSL" in protocol:
        cfg["ssl.ca.location"] = str(certs / "ca.pem")
    if client_cert:
        cfg["ssl.certificate.location"] = str(certs / "client.pem")
        cfg["ssl.key.location"] = str(certs / "client.key")
    if mechanism:
        cfg.update({"sasl.mechanism": mechanism, "sasl.username": user,
                    "sasl.password": password})
    return cfg


def produce_consume_commit(cfg, topic, n=20):
    """acks=all produce, group consume, synchronous commit; checks what was committed."""
    errors = []
    p = Producer({**cfg, "acks": "all", "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), on_delivery=lambda e, _m: e and errors.append(e))
    assert p.flush(30) == 0
    assert not errors, errors
    group = "g-" + uuid.uuid4().hex[:8]
    c = Consumer({**cfg, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m.value().decode())
    assert got == [f"v{i}" for i in range(n)]
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, 0)], timeout=10)
    assert committed[0].offset == n
    c.close()
    return group


@pytest.mark.parametrize("protocol,mechanism", [
    ("SSL", None),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
    ("SASL_PLAINTEXT", "PLAIN"),
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "SCRAM-SHA-512"),
    ("SASL_SSL", "PLAIN"),
])
def test_confluent_produce_consume_commit(sbroker, certs, protocol, mechanism):
    cfg = client_config(sbroker, certs, protocol, mechanism)
    produce_consume_commit(cfg, "t-" + uuid.uuid4().hex[:10])
    if mechanism:
        assert "authenticated" in sbroker.stderr_text() and mechanism in sbroker.stderr_text()


def test_metadata_advertises_the_listener_connected_to(sbroker, certs):
    for protocol, mechanism in [("SSL", None), ("SASL_SSL", "SCRAM-SHA-256"),
                                ("SASL_PLAINTEXT", "PLAIN")]:
        admin = AdminClient(client_config(sbroker, certs, protocol, mechanism))
        md = admin.list_topics(timeout=10)
        (broker,) = md.brokers.values()
        assert f"{broker.host}:{broker.port}" == sbroker.listeners[protocol]


def test_kafka_python_over_ssl_and_sasl(sbroker, certs):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP

    for protocol, mechanism in [("SSL", None), ("SASL_SSL", "SCRAM-SHA-512"),
                                ("SASL_PLAINTEXT", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-256")]:
        kw = {"bootstrap_servers": sbroker.listeners[protocol], "security_protocol": protocol}
        if "SSL" in protocol:
            kw["ssl_cafile"] = str(certs / "ca.pem")
        if mechanism:
            kw.update(sasl_mechanism=mechanism, sasl_plain_username=ADMIN,
                      sasl_plain_password=ADMIN_PASSWORD)
        topic = "kp-" + uuid.uuid4().hex[:8]
        p = KafkaProducer(acks="all", **kw)
        for i in range(10):
            p.send(topic, f"k{i}".encode())
        p.flush(30)
        p.close()
        c = KafkaConsumer(topic, group_id="kg-" + uuid.uuid4().hex[:6],
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          consumer_timeout_ms=15000, **kw)
        got = []
        for m in c:
            got.append(m.value.decode())
            if len(got) == 10:
                break
        assert got == [f"k{i}" for i in range(10)], (protocol, mechanism)
        c.commit()
        assert c.committed(KTP(topic, 0)) == 10
        c.close()


def test_kcat_over_sasl_ssl(sbroker, certs, tmp_path):
    topic = "kc-" + uuid.uuid4().hex[:8]
    common = ["kcat", "-b", sbroker.listeners["SASL_SSL"],
              "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
              "-X", f"sasl.username={ADMIN}", "-X", f"sasl.password={ADMIN_PASSWORD}",
              "-X", f"ssl.ca.location={certs / 'ca.pem'}", "-X", "broker.address.family=v4"]
    out = subprocess.run(common + ["-P", "-t", topic, "-X", "acks=all"], input=b"a\nb\nc\n",
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    out = subprocess.run(common + ["-C", "-t", topic, "-o", "beginning", "-c", "3", "-e"],
                         check=True, capture_output=True, timeout=60)
    assert out.stdout.split() == [b"a", b"b", b"c"]


def auth_errors(cfg, timeout=5):
    """Connects with `cfg` and returns the errors librdkafka reported; the request fails."""
    errors = []
    admin = AdminClient({**cfg, "error_cb": errors.append, "socket.timeout.ms": 5000})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=timeout)
    admin.poll(1)  # error_cb runs from poll
    return errors


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_wrong_password_and_unknown_user_are_refused(sbroker, certs, mechanism):
    for user, password in [(ADMIN, "not-the-password"), ("nobody", "x")]:
        cfg = client_config(sbroker, certs, "SASL_SSL", mechanism, user=user, password=password)
        errors = auth_errors(cfg)
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
        assert any("invalid credentials" in e.str() for e in errors), errors
    log = sbroker.stderr_text()
    assert "authentication failed" in log
    assert "unknown user" in log
    # The refusal is held back by failed_authentication_delay_ms (100 ms by default).
    started = time.monotonic()
    with socket.create_connection(addr(sbroker, "SASL_PLAINTEXT")) as s:
        s.sendall(sasl_frame(17, 1, encode_str(b"PLAIN")))
        read_response(s)
        s.sendall(sasl_frame(36, 0, encode_bytes(b"\0admin\0wrong")))
        resp = read_response(s)
        assert time.monotonic() - started >= 0.1
        (code,) = struct.unpack(">h", resp[4:6])
        assert code == 58  # SASL_AUTHENTICATION_FAILED
        assert closed_by_peer(s)


def encode_str(b):
    return struct.pack(">h", len(b)) + b


def encode_bytes(b):
    return struct.pack(">i", len(b)) + b


def sasl_frame(key, version, body):
    header = struct.pack(">hhih", key, version, 7, 1) + b"t"
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def read_response(s):
    s.settimeout(10)
    (n,) = struct.unpack(">i", recv_exact(s, 4))
    return recv_exact(s, n)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return buf


def test_mutual_tls_principal_is_the_certificate_subject(tmp_path, certs):
    b = secure_broker(tmp_path, certs, mtls=True)
    try:
        cfg = client_config(b, certs, "SSL", client_cert=True)
        produce_consume_commit(cfg, "m-" + uuid.uuid4().hex[:8], n=5)
        assert "User:CN=client-1,O=Waterline Tests" in b.stderr_text()
        # Without a client certificate the handshake fails and is logged.
        no_cert = AdminClient({**client_config(b, certs, "SSL"), "socket.timeout.ms": 5000})
        with pytest.raises(KafkaException):
            no_cert.list_topics(timeout=5)
        assert "TLS handshake failed" in b.stderr_text()
    finally:
        assert b.stop() == 0, b.stderr_text()[-4000:]


def test_credentials_from_alter_survive_kill_9(tmp_path, certs):
    b = secure_broker(tmp_path, certs)
    try:
        admin = AdminClient(client_config(b, certs, "SASL_SSL", "SCRAM-SHA-256"))
        for f in admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                         b"alice-pw"),
            UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                         b"bob-pw"),
        ]).values():
            f.result(10)
        futs = admin.describe_user_scram_credentials(["alice", "bob", ADMIN])
        described = {u: f.result(10) for u, f in futs.items()}
        assert [i.mechanism for i in described["alice"].scram_credential_infos] == \
            [ScramMechanism.SCRAM_SHA_512]
        assert described["alice"].scram_credential_infos[0].iterations == 8192
        assert len(described[ADMIN].scram_credential_infos) == 2
        # Never on disk in the clear.
        text = (b.data_dir / "scram-credentials").read_text()
        assert "alice-pw" not in text and "alice" in text
        b.kill()
        b.start()
        produce_consume_commit(
            client_config(b, certs, "SASL_SSL", "SCRAM-SHA-512", user="alice", password="alice-pw"),
            "a-" + uuid.uuid4().hex[:8], n=3)
        # PLAIN checks against the SCRAM credential.
        produce_consume_commit(
            client_config(b, certs, "SASL_PLAINTEXT", "PLAIN", user="bob", password="bob-pw"),
            "b-" + uuid.uuid4().hex[:8], n=3)
        admin = AdminClient(client_config(b, certs, "SASL_SSL", "SCRAM-SHA-256"))
        for f in admin.alter_user_scram_credentials([
            UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)]).values():
            f.result(10)
        errors = auth_errors(client_config(b, certs, "SASL_PLAINTEXT", "PLAIN", user="bob",
                                           password="bob-pw"))
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    finally:
        if b.proc is not None:
            assert b.stop() == 0, b.stderr_text()[-4000:]


def api_versions_frame():
    """An ApiVersions v0 request: header (key 18, version 0, correlation 1, client id "t")."""
    body = struct.pack(">hhih", 18, 0, 1, 1) + b"t"
    return struct.pack(">i", len(body)) + body


def metadata_frame():
    """A Metadata v1 request for all topics (null array)."""
    body = struct.pack(">hhih", 3, 1, 2, 1) + b"t" + struct.pack(">i", -1)
    return struct.pack(">i", len(body)) + body


def closed_by_peer(sock, timeout=10):
    """Reads until EOF; True if the broker closed the connection within `timeout`."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True
    except socket.timeout:
        return False


def addr(b, protocol):
    host, port = b.listeners[protocol].rsplit(":", 1)
    return host, int(port)


def test_misdirected_and_malformed_connections_are_closed_and_logged(sbroker, certs):
    # A plaintext Kafka client on a TLS listener.
    with socket.create_connection(addr(sbroker, "SSL")) as s:
        s.sendall(api_versions_frame())
        assert closed_by_peer(s)
    # A TLS client on the plaintext listener.
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with socket.create_connection(addr(sbroker, "PLAINTEXT")) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1").do_handshake()
    # SASL bytes before any handshake.
    with socket.create_connection(addr(sbroker, "SASL_PLAINTEXT")) as s:
        s.sendall(b"n,,n=admin,r=abcdefgh")
        assert closed_by_peer(s)
    # A request other than ApiVersions/SaslHandshake/SaslAuthenticate before authentication.
    with socket.create_connection(addr(sbroker, "SASL_PLAINTEXT")) as s:
        s.sendall(api_versions_frame())
        (n,) = struct.unpack(">i", s.recv(4))
        assert n > 0
        s.sendall(metadata_frame())
        assert closed_by_peer(s)
    # An oversized SaslAuthenticate (600 KiB claimed) after the handshake.
    with socket.create_connection(addr(sbroker, "SASL_PLAINTEXT")) as s:
        s.sendall(sasl_frame(17, 1, encode_str(b"SCRAM-SHA-256")))
        read_response(s)
        s.sendall(struct.pack(">i", 600 * 1024) + struct.pack(">hhih", 36, 0, 9, 1) + b"t")
        assert closed_by_peer(s)
    # A second handshake after a successful PLAIN exchange: an error answer, then closed.
    with socket.create_connection(addr(sbroker, "SASL_PLAINTEXT")) as s:
        s.sendall(sasl_frame(17, 1, encode_str(b"PLAIN")))
        read_response(s)
        s.sendall(sasl_frame(36, 0, encode_bytes(f"\0{ADMIN}\0{ADMIN_PASSWORD}".encode())))
        assert struct.unpack(">h", read_response(s)[4:6])[0] == 0
        s.sendall(sasl_frame(17, 1, encode_str(b"PLAIN")))
        assert struct.unpack(">h", read_response(s)[4:6])[0] == 34  # ILLEGAL_SASL_STATE
        assert closed_by_peer(s)
    time.sleep(0.2)
    log = sbroker.stderr_text()
    assert "TLS handshake failed" in log
    assert "a TLS handshake on a listener without TLS" in log
    assert "before SASL authentication completed" in log
    assert "exceeds sasl_max_receive_bytes (not authenticated yet) 524288" in log
    assert "a second SaslHandshake" in log
    # And the broker still serves.
    produce_consume_commit(client_config(sbroker, certs, "SASL_SSL", "SCRAM-SHA-256"),
                           "ok-" + uuid.uuid4().hex[:8], n=2)


def waterline(*args, env=None, input=None):
    from harness import waterline_bin
    import os
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([waterline_bin(), *args], capture_output=True, text=True, env=e,
                          input=input, timeout=60)


def test_operator_tools_over_sasl_ssl(sbroker, certs, tmp_path):
    props = tmp_path / "client.properties"
    props.write_text(
        "# as for kafka-topics --command-config\n"
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        f"sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f"username=\"{ADMIN}\" password=\"{ADMIN_PASSWORD}\";\n"
        f"ssl.ca.location={certs / 'ca.pem'}\n")
    env = {"WATERLINE_BOOTSTRAP_SERVER": sbroker.listeners["SASL_SSL"],
           "WATERLINE_COMMAND_CONFIG": str(props)}
    topic = "tools-" + uuid.uuid4().hex[:8]
    r = waterline("topics", "create", "--topic", topic, "--partitions", "1", env=env)
    assert r.returncode == 0, r.stderr
    r = waterline("topics", "list", env=env)
    assert r.returncode == 0 and topic in r.stdout, r.stderr
    group = produce_consume_commit(client_config(sbroker, certs, "SASL_SSL", "SCRAM-SHA-256"),
                                   topic, n=4)
    r = waterline("groups", "list", env=env)
    assert r.returncode == 0 and group in r.stdout, r.stderr
    r = waterline("lag", "--group", group, "--output", "json", env=env)
    assert r.returncode == 0 and topic in r.stdout, r.stderr
    r = waterline("offsets", "export", "--group", group, env=env)
    assert r.returncode == 0 and topic in r.stdout, r.stderr
    # Users: set (password on stdin), list, log in as the user, delete.
    r = waterline("users", "set", "--user", "carol", input="carol-pw\n", env=env)
    assert r.returncode == 0, r.stderr
    r = waterline("users", "list", env=env)
    assert r.returncode == 0, r.stderr
    assert "carol" in r.stdout and "SCRAM-SHA-512(iterations=4096)" in r.stdout, r.stdout
    produce_consume_commit(
        client_config(sbroker, certs, "SASL_SSL", "SCRAM-SHA-512", user="carol", password="carol-pw"),
        "c-" + uuid.uuid4().hex[:8], n=2)
    r = waterline("users", "delete", "--user", "carol", env=env)
    assert r.returncode == 0, r.stderr
    r = waterline("users", "list", "--user", "carol", env=env)
    assert r.returncode == 1 and "carol" in r.stderr, (r.stdout, r.stderr)
    # Wrong password and a plaintext tool on the TLS port: one-line errors, exit 1.
    bad = tmp_path / "bad.properties"
    bad.write_text(props.read_text().replace(ADMIN_PASSWORD, "wrong"))
    r = waterline("topics", "list", "--command-config", str(bad),
                  "--bootstrap-server", sbroker.listeners["SASL_SSL"])
    assert r.returncode == 1 and "authentication" in r.stderr and "invalid credentials" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = waterline("topics", "list", "--bootstrap-server", sbroker.listeners["SSL"], "--timeout-ms", "3000")
    assert r.returncode == 1, r.stderr
    # A bad properties file is a usage error naming the key.
    bad.write_text("security.protocol=TLS\n")
    r = waterline("topics", "list", "--command-config", str(bad))
    assert r.returncode == 2 and "security.protocol" in r.stderr, r.stderr


def server_cert_cn(b, certs):
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with socket.create_connection(addr(b, "SSL")) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]


def test_sighup_reloads_the_certificate(tmp_path, certs):
    # The broker reads its own copies, so replacing them does not disturb other tests.
    own = tmp_path / "own"
    own.mkdir()
    for f in ["server.pem", "server.key"]:
        (own / f).write_bytes((certs / f).read_bytes())
    b = secure_broker(tmp_path / "b", certs)
    b.stop()
    b.extra_args[b.extra_args.index("--tls-cert") + 1] = str(own / "server.pem")
    b.extra_args[b.extra_args.index("--tls-key") + 1] = str(own / "server.key")
    b.start()
    try:
        assert server_cert_cn(b, certs) == "localhost"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl("req", "-new", *ec, "-keyout", str(own / "server.key"), "-out", "new.csr",
                "-subj", "/CN=renewed", cwd=own)
        openssl("x509", "-req", "-in", "new.csr", "-CA", str(certs / "ca.pem"), "-CAkey",
                str(certs / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile",
                str(certs / "server.ext"), "-out", str(own / "server.pem"), cwd=own)
        # Until the signal, the old certificate is served.
        assert server_cert_cn(b, certs) == "localhost"
        b.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "TLS certificate and key reloaded" not in b.stderr_text():
            assert time.monotonic() < deadline, b.stderr_text()[-2000:]
            time.sleep(0.05)
        assert server_cert_cn(b, certs) == "renewed"
        # A broken file on the next SIGHUP keeps the current certificate.
        (own / "server.key").write_text("not a key")
        b.proc.send_signal(signal.SIGHUP)
        while "TLS reload failed" not in b.stderr_text():
            assert time.monotonic() < deadline + 10, b.stderr_text()[-2000:]
            time.sleep(0.05)
        assert server_cert_cn(b, certs) == "renewed"
    finally:
        assert b.stop() == 0, b.stderr_text()[-4000:]
