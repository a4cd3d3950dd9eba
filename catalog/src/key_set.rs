//! A set of distinct person keys, split by hash into partitions.
//!
//! Millions of 64-character pseudonyms do not fit a processor's caches:
//! inserting each into one hash table costs a few cache misses. Here keys
//! wait in their partition's buffer, written in sequence, and a full buffer
//! is inserted into its partition's table, small enough to stay in cache
//! while it is.

use std::hash::BuildHasher;

use datafusion::arrow::array::LargeStringArray;
use datafusion::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::error::ArrowError;
use hashbrown::HashTable;

use crate::linkage::hasher;

/// Partitions of the set: the top bits of a key's hash choose one.
const PARTITION_BITS: u32 = 8;
/// Keys a partition's buffer holds before they are inserted.
const PENDING: usize = 2048;

/// Distinct keys, as bytes.
pub(crate) struct KeySet {
    parts: Vec<Part>,
}

#[derive(Default)]
struct Part {
    /// The distinct keys, one after the other, and where each ends.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    hashes: Vec<u64>,
    table: HashTable<u32>,
    /// Keys waiting to be inserted, with their hashes.
    pending_bytes: Vec<u8>,
    pending_ends: Vec<usize>,
    pending_hashes: Vec<u64>,
}

/// Key `i` of keys stored one after the other, ending at `ends`.
fn key_at<'a>(bytes: &'a [u8], ends: &[usize], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &bytes[start..ends[i]]
}

impl Part {
    fn insert(&mut self, hash: u64, key: &[u8]) {
        let Part {
            bytes,
            ends,
            hashes,
            table,
            ..
        } = self;
        if table
            .find(hash, |&i| key_at(bytes, ends, i as usize) == key)
            .is_some()
        {
            return;
        }
        let index = ends.len() as u32;
        table.insert_unique(hash, index, |&i| hashes[i as usize]);
        bytes.extend_from_slice(key);
        ends.push(bytes.len());
        hashes.push(hash);
    }

    fn flush(&mut self) {
        let pending_bytes = std::mem::take(&mut self.pending_bytes);
        let pending_ends = std::mem::take(&mut self.pending_ends);
        let pending_hashes = std::mem::take(&mut self.pending_hashes);
        let mut start = 0;
        for (&end, &hash) in pending_ends.iter().zip(&pending_hashes) {
            self.insert(hash, &pending_bytes[start..end]);
            start = end;
        }
        // The buffers are kept for the next keys.
        self.pending_bytes = pending_bytes;
        self.pending_bytes.clear();
        self.pending_ends = pending_ends;
        self.pending_ends.clear();
        self.pending_hashes = pending_hashes;
        self.pending_hashes.clear();
    }
}

impl KeySet {
    pub(crate) fn new() -> Self {
        KeySet {
            parts: (0..1 << PARTITION_BITS).map(|_| Part::default()).collect(),
        }
    }

    /// Adds `key` (inserted later, with the other keys of its partition).
    pub(crate) fn add(&mut self, key: &[u8]) {
        let hash = hasher().hash_one(key);
        let part = &mut self.parts[(hash >> (64 - PARTITION_BITS)) as usize];
        part.pending_bytes.extend_from_slice(key);
        part.pending_ends.push(part.pending_bytes.len());
        part.pending_hashes.push(hash);
        if part.pending_ends.len() >= PENDING {
            part.flush();
        }
    }

    /// Adds every key of `other`: the two halves of the partitions on two
    /// threads.
    pub(crate) fn merge(&mut self, mut other: KeySet) {
        fn merge_parts(mine: &mut [Part], theirs: &mut [Part]) {
            for (mine, theirs) in mine.iter_mut().zip(theirs.iter_mut()) {
                mine.flush();
                theirs.flush();
                for i in 0..theirs.ends.len() {
                    mine.insert(theirs.hashes[i], key_at(&theirs.bytes, &theirs.ends, i));
                }
            }
        }
        let half = self.parts.len() / 2;
        let (mine_a, mine_b) = self.parts.split_at_mut(half);
        let (theirs_a, theirs_b) = other.parts.split_at_mut(half);
        std::thread::scope(|scope| {
            scope.spawn(|| merge_parts(mine_a, theirs_a));
            merge_parts(mine_b, theirs_b);
        });
    }

    /// The distinct keys, in no particular order.
    pub(crate) fn into_keys(mut self) -> Result<LargeStringArray, ArrowError> {
        let mut bytes = Vec::new();
        let mut offsets: Vec<i64> = vec![0];
        for part in &mut self.parts {
            part.flush();
            let base = bytes.len();
            bytes.extend_from_slice(&part.bytes);
            offsets.extend(part.ends.iter().map(|&e| (base + e) as i64));
            *part = Part::default();
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        LargeStringArray::try_new(offsets, Buffer::from_vec(bytes), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;

    #[test]
    fn keeps_each_key_once() {
        let mut a = KeySet::new();
        let mut b = KeySet::new();
        let mut expected = std::collections::BTreeSet::new();
        for i in 0..20_000u64 {
            let key = format!("{:x}", (i % 7_001).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            if i % 3 == 0 {
                b.add(key.as_bytes());
            } else {
                a.add(key.as_bytes());
            }
            expected.insert(key);
        }
        a.add(b"");
        b.add(b"");
        expected.insert(String::new());
        a.merge(b);
        let keys = a.into_keys().unwrap();
        let got: std::collections::BTreeSet<String> =
            (0..keys.len()).map(|i| keys.value(i).to_owned()).collect();
        assert_eq!(got.len(), keys.len());
        assert_eq!(got, expected);
    }
}
