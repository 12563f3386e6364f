//! Any byte string handed to the broker's request decoder (a frame without its length prefix)
//! must decode or fail with an error; never panic, never allocate beyond the frame's size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let _ = waterline_broker::decode_request(frame);
});
