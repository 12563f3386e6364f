//! SCRAM-SHA-256/512 at 4096 iterations: the server's share of one authentication (parse the
//! client-first, answer, verify the proof: HMACs only, the stored key is precomputed), the
//! client's share (PBKDF2 of the password, then the proof), and PLAIN's check on the server
//! (PBKDF2 per attempt, since PLAIN is checked against the SCRAM credential).
//!
//! `cargo bench -p waterline-sasl --bench scram`

use waterline_sasl::{ScramClient, ScramCredential, ScramMechanism, parse_client_first};

fn main() {
    divan::main();
}

/// One client-final message for `m`, ready for the server to verify.
fn exchange(m: ScramMechanism) -> (ScramCredential, Vec<u8>, Vec<u8>) {
    let cred = ScramCredential::from_password(m, b"password", b"salt-salt".to_vec(), 4096).unwrap();
    let (client, first) = ScramClient::new(m, "user", "password", "clientnonce");
    let (_, server_first) = parse_client_first(&first)
        .unwrap()
        .server_first(cred.clone(), "servernonce");
    let (_, last) = client.server_first(&server_first).unwrap();
    (cred, first, last)
}

#[divan::bench(args = [ScramMechanism::Sha256, ScramMechanism::Sha512])]
fn server_side_of_one_authentication(bencher: divan::Bencher, m: ScramMechanism) {
    let (cred, first, last) = exchange(m);
    bencher.bench(|| {
        let (server, _) = parse_client_first(divan::black_box(&first))
            .unwrap()
            .server_first(cred.clone(), "servernonce");
        server.client_final(divan::black_box(&last)).unwrap()
    });
}

#[divan::bench(args = [ScramMechanism::Sha256, ScramMechanism::Sha512])]
fn client_side_of_one_authentication(bencher: divan::Bencher, m: ScramMechanism) {
    let cred = ScramCredential::from_password(m, b"password", b"salt-salt".to_vec(), 4096).unwrap();
    let (_, first) = ScramClient::new(m, "user", "password", "clientnonce");
    let (_, server_first) = parse_client_first(&first)
        .unwrap()
        .server_first(cred, "servernonce");
    bencher.bench(|| {
        let (client, _) = ScramClient::new(m, "user", "password", "clientnonce");
        client
            .server_first(divan::black_box(&server_first))
            .unwrap()
    });
}

#[divan::bench]
fn plain_check_against_a_sha256_credential(bencher: divan::Bencher) {
    let cred =
        ScramCredential::from_password(ScramMechanism::Sha256, b"password", b"salt".to_vec(), 4096)
            .unwrap();
    bencher.bench(|| cred.verify_password(divan::black_box(b"password")));
}
