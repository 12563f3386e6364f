//! Any byte string given to the SASL server as a client's message — PLAIN, SCRAM client-first,
//! or SCRAM client-final after a valid client-first — must parse or fail with an error; never
//! panic. The client-final step runs twice: once as given, and once behind the expected
//! `c=biws,r=<nonce>,` prefix, so inputs reach the proof checks instead of stopping at the
//! channel-binding and nonce checks.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use waterline_sasl::{ScramCredential, ScramMechanism, parse_client_first, parse_plain};

/// The iteration count is the minimum SCRAM allows: the work per input stays small.
static CREDENTIAL: LazyLock<ScramCredential> = LazyLock::new(|| {
    ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"salt".to_vec(), 4096)
        .expect("credential")
});

fuzz_target!(|msg: &[u8]| {
    let _ = parse_plain(msg);
    if let Ok(first) = parse_client_first(msg) {
        let _ = first.username().len();
        let _ = first.server_first(CREDENTIAL.clone(), "srv");
    }
    let final_step = |msg: &[u8]| {
        let first = parse_client_first(b"n,,n=user,r=cli").expect("a valid client-first");
        let (server, _) = first.server_first(CREDENTIAL.clone(), "srv");
        let _ = server.client_final(msg);
    };
    final_step(msg);
    let mut prefixed = b"c=biws,r=clisrv,".to_vec();
    prefixed.extend_from_slice(msg);
    final_step(&prefixed);
});
