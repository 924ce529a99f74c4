//! Record batch decoding: validation, splitting and reading records (with decompression)
//! accept or refuse any bytes, never a panic or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_record::{Batch, split_batches};

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    for raw in split_batches(bytes.clone()) {
        let Ok(raw) = raw else { break };
        if let Ok(batch) = Batch::validate(raw) {
            if let Ok(records) = batch.records_with_limit(1 << 20) {
                for r in records {
                    if r.is_err() {
                        break;
                    }
                }
            }
        }
    }
    let _ = Batch::validate(bytes);
});
