//! Any produce payload handed to the record-batch splitter/validator must be accepted as whole,
//! CRC-valid batches or refused with an error; never panic.
//!
//! Random bytes almost never carry a valid CRC-32C, which would stop the fuzzer at the CRC check.
//! So the input is tried twice: as given, and with the first batch's CRC field rewritten to the
//! CRC of its bytes, which lets the fuzzer reach record framing and decompression.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Batch v2 layout: baseOffset(8) batchLength(4) leaderEpoch(4) magic(1) crc(4) attributes...
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;

fn check(records: &[u8]) {
    if let Ok(ranges) = waterline_log::split_batches(records, 1 << 20) {
        for r in ranges {
            assert!(r.start <= r.end && r.end <= records.len());
            let header = waterline_log::BatchHeader::parse(&records[r]).expect("validated batch");
            assert!(header.record_count >= 0);
        }
    }
}

fuzz_target!(|records: &[u8]| {
    check(records);
    if records.len() > CRC_FROM {
        let mut fixed = records.to_vec();
        let batch_len = i32::from_be_bytes(fixed[8..12].try_into().unwrap());
        let end = usize::try_from(batch_len)
            .ok()
            .and_then(|l| l.checked_add(12))
            .filter(|&e| e <= fixed.len() && e > CRC_FROM)
            .unwrap_or(fixed.len());
        let crc = crc32c::crc32c(&fixed[CRC_FROM..end]);
        fixed[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        check(&fixed);
    }
});
