//! The consumer over SASL_SSL: a `waterline serve` with a SASL_SSL listener (certificates
//! made here with the `openssl` CLI, a SCRAM user stored before the start), records produced
//! and consumed with SCRAM-SHA-512 over TLS through the consumer's connection properties, the
//! commit landing in the group; a wrong password gets no records.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use waterline_broker::auth::{CredentialChange, Credentials};
use waterline_broker::{Broker, BrokerConfig};
use waterline_consumer::{Consumer, ConsumerConfig};
use waterline_sasl::{ScramCredential, ScramMechanism};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 (P-256).
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    ]);
    openssl(dir, &ca);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    let mut csr = vec!["req", "-new"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn secure(config: &mut ClientConfig, ca: &Path, password: &str) {
    config
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "app")
        .set("sasl.password", password)
        .set("ssl.ca.location", ca.to_str().unwrap())
        .set("broker.address.family", "v4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_and_commits_over_sasl_ssl() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The user exists before the start, as after an AlterUserScramCredentials.
    Credentials::open(&data)
        .unwrap()
        .apply(vec![CredentialChange::Upsert(
            "app".into(),
            ScramCredential::generate(ScramMechanism::Sha512, b"app-pw", 4096).unwrap(),
        )])
        .unwrap();
    let mut config = BrokerConfig {
        data_dir: data,
        listeners: vec!["SASL_SSL://127.0.0.1:0".into()],
        tls_cert: Some(dir.path().join("server.pem")),
        tls_key: Some(dir.path().join("server.key")),
        // A SASL listener turns authorization on; this test is about the connection, not ACLs.
        super_users: vec!["User:app".into()],
        ..Default::default()
    };
    config.groups.initial_rebalance_delay_ms = 0;
    config.groups.min_session_timeout_ms = 500;
    // Its own runtime, as a separate server would have.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = rt
        .spawn(async move { Broker::start(config).await })
        .await
        .unwrap()
        .unwrap();
    let addr = broker.local_addr().to_string();
    let ca = dir.path().join("ca.pem");

    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", &addr)
        .set("message.timeout.ms", "20000");
    secure(&mut pc, &ca, "app-pw");
    let producer: FutureProducer = pc.create().unwrap();
    for i in 0..10 {
        let payload = format!("{i}");
        producer
            .send(
                FutureRecord::<[u8], _>::to("secure")
                    .partition(0)
                    .payload(&payload),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let builder = ConsumerConfig::builder(&addr, "g-secure")
        .topic("secure")
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "app")
        .set("sasl.password", "app-pw")
        .set("ssl.ca.location", ca.to_str().unwrap())
        .set("broker.address.family", "v4")
        .set("session.timeout.ms", "6000");
    let c = Consumer::new(builder.build().unwrap()).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let d = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("records within 30 s")
            .unwrap();
        seen.push(String::from_utf8(d.payload().unwrap().to_vec()).unwrap());
        assert!(d.ack());
    }
    assert_eq!(seen, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    assert!(c.shutdown(Duration::from_secs(10)).await.final_commit_ok);
    drop(c);

    // The final commit is in the group, read back over SASL_SSL.
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &addr)
        .set("group.id", "g-secure");
    secure(&mut cc, &ca, "app-pw");
    let reader: BaseConsumer = cc.create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition("secure", 0);
    let committed =
        tokio::task::spawn_blocking(move || reader.committed_offsets(tpl, Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        committed.elements()[0].offset(),
        rdkafka::Offset::Offset(10)
    );

    // A wrong password: the client cannot even fetch metadata.
    let mut bad = ClientConfig::new();
    bad.set("bootstrap.servers", &addr);
    secure(&mut bad, &ca, "wrong");
    let bad: BaseConsumer = bad.create().unwrap();
    let md = tokio::task::spawn_blocking(move || {
        bad.fetch_metadata(None, Duration::from_secs(3)).map(|_| ())
    })
    .await
    .unwrap();
    assert!(md.is_err());

    rt.spawn(async move { broker.shutdown().await })
        .await
        .unwrap()
        .unwrap();
    rt.shutdown_background();
}
