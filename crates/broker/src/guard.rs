//! Pre-decode guard for request bodies, run by the codec before kafka-protocol decodes a body:
//! the broker's face of [`waterline_wire`], which walks the body with the wire layout of its
//! request (generated from kafka-protocol's decoders) and refuses element counts the frame
//! cannot hold, because kafka-protocol 0.18 allocates them up front.
//!
//! Invariant upheld: if [`check`] accepts a body, every array count in it is at most the number
//! of bytes left at that point, and the request holds at most [`MAX_ELEMENTS`] array elements in
//! total, so decoding allocates memory proportional to the frame. Every API the broker serves
//! must have a layout (a test below enforces it).

pub use waterline_wire::WireError;

/// Upper bound on array elements in one request (all arrays, all nesting levels).
pub const MAX_ELEMENTS: usize = waterline_wire::MAX_REQUEST_ELEMENTS;

/// Whether the guard knows the layout of this API's request.
pub fn knows(api_key: i16) -> bool {
    waterline_wire::knows_request(api_key)
}

/// Checks that `body` (the bytes after the request header) can be decoded without unbounded
/// allocation. Returns the reason on rejection.
pub fn check(api_key: i16, version: i16, body: &[u8]) -> Result<(), WireError> {
    waterline_wire::check_request(api_key, version, body)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;

    /// A served API without a request layout would have every request refused.
    #[test]
    fn every_served_api_has_a_request_layout() {
        let mut served = 0;
        for key in ApiKey::iter() {
            if crate::handlers::supported_versions(key).is_some() {
                assert!(
                    super::knows(key as i16),
                    "{key:?} is served without a layout"
                );
                served += 1;
            }
        }
        assert!(served > 10, "only {served} served APIs found");
    }
}
