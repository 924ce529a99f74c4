//! Splitting a buffer of concatenated batches into one `Bytes` per batch.

use bytes::Bytes;

use crate::error::RecordError;
use crate::header::{HEADER_LEN, LOG_OVERHEAD, peek_len};

/// Splits a buffer holding consecutive batches (a produce request's `records` field, or a
/// read result) into per-batch `Bytes` slices, without copying or checking CRCs.
pub fn split_batches(buf: Bytes) -> BatchSplit {
    BatchSplit {
        rest: buf,
        failed: false,
    }
}

/// Iterator returned by [`split_batches`].
///
/// A trailing partial batch yields [`RecordError::TooShort`]; a length field too small to
/// hold a batch header yields [`RecordError::LengthMismatch`]. Either ends the iteration,
/// since nothing after a bad length field can be located.
#[derive(Debug, Clone)]
pub struct BatchSplit {
    rest: Bytes,
    failed: bool,
}

impl BatchSplit {
    /// The bytes not yet handed out (after an error: the bytes from the bad batch on).
    pub fn remaining(&self) -> &Bytes {
        &self.rest
    }
}

impl Iterator for BatchSplit {
    type Item = Result<Bytes, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let have = self.rest.len();
        let err = match peek_len(&self.rest) {
            None => RecordError::TooShort {
                need: LOG_OVERHEAD,
                have,
            },
            Some((_, total)) if total < HEADER_LEN => RecordError::LengthMismatch {
                header: total,
                actual: have,
            },
            Some((_, total)) if total > have => RecordError::TooShort { need: total, have },
            Some((_, total)) => return Some(Ok(self.rest.split_to(total))),
        };
        self.failed = true;
        Some(Err(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchBuilder, Compression};

    fn batch(n: usize) -> Bytes {
        let mut b = BatchBuilder::new(Compression::None);
        for _ in 0..n {
            b.push(None, Some(b"v"), &[], 0);
        }
        b.build().unwrap()
    }

    #[test]
    fn splits_consecutive_batches_without_copying() {
        let (a, b) = (batch(1), batch(3));
        let whole = Bytes::from([a.to_vec(), b.to_vec()].concat());
        let base = whole.as_ptr();
        let parts: Vec<Bytes> = split_batches(whole).collect::<Result<_, _>>().unwrap();
        assert_eq!(parts, [a.clone(), b]);
        assert_eq!(parts[0].as_ptr(), base);
        assert_eq!(parts[1].as_ptr(), base.wrapping_add(a.len()));
    }

    #[test]
    fn empty_buffer_yields_nothing() {
        assert_eq!(split_batches(Bytes::new()).count(), 0);
    }

    #[test]
    fn trailing_partial_batch_is_an_error() {
        let a = batch(2);
        let whole = Bytes::from([a.to_vec(), a[..40].to_vec()].concat());
        let mut it = split_batches(whole);
        assert_eq!(it.next(), Some(Ok(a.clone())));
        assert_eq!(
            it.next(),
            Some(Err(RecordError::TooShort {
                need: a.len(),
                have: 40
            }))
        );
        assert_eq!(it.next(), None);

        let tiny = Bytes::from([a.to_vec(), vec![0; 5]].concat());
        let last = split_batches(tiny).last();
        assert_eq!(last, Some(Err(RecordError::TooShort { need: 12, have: 5 })));
    }

    #[test]
    fn impossible_length_field_stops_the_split() {
        let mut bad = batch(1).to_vec();
        bad[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        let have = bad.len();
        let mut it = split_batches(Bytes::from(bad));
        assert_eq!(
            it.next(),
            Some(Err(RecordError::LengthMismatch {
                header: 12,
                actual: have
            }))
        );
        assert_eq!(it.remaining().len(), have);
        assert_eq!(it.next(), None);
    }
}
