//! Any produce payload handed to the record-batch splitter/validator must be accepted as whole,
//! CRC-valid batches or refused with an error; never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|records: &[u8]| {
    if let Ok(ranges) = waterline_log::split_batches(records, 1 << 20) {
        for r in ranges {
            assert!(r.start <= r.end && r.end <= records.len());
            let header = waterline_log::BatchHeader::parse(&records[r]).expect("validated batch");
            assert!(header.record_count >= 0);
        }
    }
});
