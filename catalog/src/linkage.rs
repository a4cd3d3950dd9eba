//! The person linkage index: one dense `person_id` per linked person.
//!
//! Persons are the keys seen in a source's person-level tables. Keys that the
//! linkage table maps to the same `link_key` get the same number in every
//! source. Numbering: link keys in ascending byte order first, then unlinked
//! keys ordered by (source name, key). The same files always give the same
//! numbers. Keys first seen in a later delivery ([`PersonIndex::extend`])
//! are numbered after all existing persons, in the same order among
//! themselves; existing numbers never change.

use std::collections::HashMap;
use std::fs::File;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, LargeStringArray, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use hashbrown::HashTable;

use crate::csv_import;
use crate::error::{CatalogError, Result};
use crate::tables;

/// The keys of one source with the person number of each: sorted, then
/// the keys of each later delivery appended (sorted among themselves).
pub struct SourceKeys {
    keys: LargeStringArray,
    ids: Vec<u32>,
    lookup: OnceLock<HashTable<u32>>,
}

impl std::fmt::Debug for SourceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// The hasher of person keys, the same for the whole process.
pub(crate) fn hasher() -> &'static hashbrown::DefaultHashBuilder {
    static H: OnceLock<hashbrown::DefaultHashBuilder> = OnceLock::new();
    H.get_or_init(hashbrown::DefaultHashBuilder::default)
}

impl SourceKeys {
    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the source has no persons.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn table(&self) -> &HashTable<u32> {
        self.lookup.get_or_init(|| {
            let mut t = HashTable::with_capacity(self.keys.len());
            let h = hasher();
            for i in 0..self.keys.len() {
                let k = self.keys.value(i);
                t.insert_unique(h.hash_one(k), i as u32, |&j| {
                    h.hash_one(self.keys.value(j as usize))
                });
            }
            t
        })
    }

    /// The position of a key among the source's keys, if known.
    pub fn position_of(&self, key: &str) -> Option<u32> {
        self.table()
            .find(hasher().hash_one(key), |&j| {
                self.keys.value(j as usize) == key
            })
            .copied()
    }

    /// The person number of the key at `position`.
    pub fn id_at(&self, position: usize) -> Option<u32> {
        self.ids.get(position).copied()
    }

    /// The key at `position`.
    pub fn key_at(&self, position: usize) -> Option<&str> {
        (position < self.keys.len()).then(|| self.keys.value(position))
    }

    /// The person number of a key, if the key is known.
    pub fn person_id(&self, key: &str) -> Option<u32> {
        let pos = self.table().find(hasher().hash_one(key), |&j| {
            self.keys.value(j as usize) == key
        })?;
        Some(self.ids[*pos as usize])
    }

    /// The position of a key in keys sorted as one delivery.
    fn position(&self, key: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.keys.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.keys.value(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

/// The person numbers of every source of a store.
#[derive(Debug, Clone)]
pub struct PersonIndex {
    persons: u64,
    /// The numbers given to link keys: one range per delivery that brought new ones.
    linked: Vec<(u64, u64)>,
    sources: HashMap<String, Arc<SourceKeys>>,
}

/// A row of the linkage table: (source, person_key, link_key).
pub struct LinkRow<'a> {
    pub source: &'a str,
    pub person_key: &'a str,
    pub link_key: &'a str,
}

impl PersonIndex {
    /// Number of distinct linked persons.
    pub fn persons(&self) -> u64 {
        self.persons
    }

    /// Number of persons with a link key seen in at least one source.
    pub fn linked_persons(&self) -> u64 {
        self.linked.iter().map(|(a, b)| b - a).sum()
    }

    /// True when person `id` was numbered by a link key.
    pub fn is_linked(&self, id: u32) -> bool {
        let id = u64::from(id);
        self.linked.iter().any(|&(a, b)| a <= id && id < b)
    }

    /// The keys of a source.
    pub fn source(&self, name: &str) -> Option<&Arc<SourceKeys>> {
        self.sources.get(name)
    }

    /// Builds the index from each source's sorted distinct keys and the linkage rows.
    ///
    /// `links` yields rows with their place in the linkage file for messages:
    /// a CSV line when `lines` is true, else a Parquet row.
    pub fn build<'a>(
        keys: Vec<(String, LargeStringArray)>,
        links: impl Iterator<Item = (u64, LinkRow<'a>)>,
        linkage_file: &Path,
        lines: bool,
    ) -> Result<PersonIndex> {
        let at = |row: u64, column: &str, problem: String| {
            link_error(linkage_file, lines, row, column, problem)
        };
        let order: Vec<String> = keys.iter().map(|(s, _)| s.clone()).collect();
        // (person key, link key, source) of each row, and the row's place.
        let mut rows: Vec<(&'a str, &'a str, u32)> = Vec::new();
        let mut places: Vec<u64> = Vec::new();
        let started = std::time::Instant::now();
        for (row, link) in links {
            let Some(src_idx) = order.iter().position(|s| s == link.source) else {
                return Err(at(
                    row,
                    "source",
                    "the row names a source that the manifest does not declare".into(),
                ));
            };
            rows.push((link.person_key, link.link_key, src_idx as u32));
            places.push(row);
        }
        if rows.len() >= u32::MAX as usize {
            return Err(CatalogError::malformed(
                linkage_file,
                None,
                None,
                "the linkage table has more rows than the index can hold (2^32 - 1)",
            ));
        }
        let sorted_keys: Vec<&LargeStringArray> = keys.iter().map(|(_, k)| k).collect();
        let positions = positions_of(&sorted_keys, &rows);
        log::debug!("linkage rows looked up in {:.1?}", started.elapsed());
        // (link key prefix, link key, source, position of key in that source, row)
        let present: Vec<(u64, &'a str, u32, u32, u32)> = rows
            .iter()
            .zip(&positions)
            .enumerate()
            .filter(|(_, (_, pos))| **pos != u32::MAX)
            .map(|(i, (&(_, link, src), &pos))| (prefix(link), link, src, pos, i as u32))
            .collect();
        // In link key order: the keys' first eight bytes compared as an
        // integer first, so most comparisons do not read the key's text.
        let present = sort_in_two(present, |a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.cmp(b.1))
                .then((a.2, a.3).cmp(&(b.2, b.3)))
        });
        log::debug!("linkage rows sorted at {:.1?}", started.elapsed());
        let mut ids: Vec<Vec<u32>> = keys.iter().map(|(_, k)| vec![u32::MAX; k.len()]).collect();
        let mut next: u64 = 0;
        let mut last: Option<&str> = None;
        for &(_, link_key, src_idx, pos, i) in &present {
            if last != Some(link_key) {
                if last.is_some() {
                    next += 1;
                }
                last = Some(link_key);
            }
            let slot = &mut ids[src_idx as usize][pos as usize];
            if *slot != u32::MAX && u64::from(*slot) != next {
                return Err(at(
                    places[i as usize],
                    "link_key",
                    format!(
                        "a person key of source {} is linked to two different link keys",
                        order[src_idx as usize]
                    ),
                ));
            }
            *slot = next as u32;
        }
        drop(present);
        drop(rows);
        let mut sources: HashMap<String, SourceKeys> = keys
            .into_iter()
            .zip(ids)
            .map(|((name, keys), ids)| {
                let lookup = OnceLock::new();
                (name, SourceKeys { keys, ids, lookup })
            })
            .collect();
        let linked = if last.is_some() { next + 1 } else { 0 };
        let next = number_unlinked(&mut sources, linked, linkage_file)?;
        Ok(PersonIndex {
            persons: next,
            linked: vec![(0, linked)],
            sources: sources.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        })
    }

    /// The index after a delivery that brought `new_keys` (per source,
    /// sorted, none already known), with the store's whole linkage: every
    /// existing number stays; persons already numbered keep theirs when
    /// linked to new keys; new link keys are numbered next, in ascending
    /// order, then new unlinked keys by (source name, key). `Ok(Err(reason))`
    /// when the linkage now joins persons numbered apart (the store must be
    /// numbered again).
    pub fn extend<'a>(
        &self,
        new_keys: Vec<(String, LargeStringArray)>,
        links: impl Iterator<Item = (u64, LinkRow<'a>)>,
        linkage_file: &Path,
        lines: bool,
    ) -> Result<std::result::Result<PersonIndex, String>> {
        let at = |row: u64, column: &str, problem: String| {
            link_error(linkage_file, lines, row, column, problem)
        };
        let mut order: Vec<String> = new_keys.iter().map(|(s, _)| s.clone()).collect();
        for name in self.sources.keys() {
            if !order.contains(name) {
                order.push(name.clone());
            }
        }
        let mut added = unnumbered(new_keys);
        // Link keys of persons already numbered, and new keys waiting for a number.
        let mut numbered: HashMap<&'a str, u32> = HashMap::new();
        let mut waiting: Vec<(&'a str, usize, usize, u64)> = Vec::new();
        let mut link_of: HashMap<(usize, u32), &'a str> = HashMap::new();
        for (row, link) in links {
            let Some(src_idx) = order.iter().position(|s| s == link.source) else {
                return Err(at(
                    row,
                    "source",
                    "the row names a source that the manifest does not declare".into(),
                ));
            };
            let known = self.sources.get(link.source).and_then(|s| {
                let pos = s.position_of(link.person_key)?;
                Some((pos, s.id_at(pos as usize)?))
            });
            if let Some((pos, id)) = known {
                // As when numbering from scratch: one link key per person key.
                match link_of.insert((src_idx, pos), link.link_key) {
                    Some(other) if other != link.link_key => {
                        return Err(at(
                            row,
                            "link_key",
                            format!(
                                "a person key of source {} is linked to two different link keys",
                                link.source
                            ),
                        ));
                    }
                    _ => {}
                }
                match numbered.insert(link.link_key, id) {
                    Some(other) if other != id => {
                        return Ok(Err(format!(
                            "the linkage now links persons numbered apart (row {row} of {})",
                            linkage_file.display()
                        )));
                    }
                    _ => {}
                }
            } else if let Some(pos) = added
                .get(link.source)
                .and_then(|s| s.position(link.person_key))
            {
                waiting.push((link.link_key, src_idx, pos, row));
            }
        }
        waiting.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let start = self.persons;
        let mut next = start;
        for &(link_key, src_idx, pos, row) in &waiting {
            let id = match numbered.get(link_key) {
                Some(&id) => id,
                None => {
                    let id = next as u32;
                    next += 1;
                    numbered.insert(link_key, id);
                    id
                }
            };
            let src = added.get_mut(&order[src_idx]).expect("known source");
            let current = src.ids[pos];
            if current != u32::MAX && current != id {
                return Err(at(
                    row,
                    "link_key",
                    format!(
                        "a person key of source {} is linked to two different link keys",
                        order[src_idx]
                    ),
                ));
            }
            src.ids[pos] = id;
        }
        let mut linked = self.linked.clone();
        if next > start {
            linked.push((start, next));
        }
        // Persons numbered unlinked before and linked now.
        let mut newly: Vec<u64> = numbered
            .values()
            .map(|&id| u64::from(id))
            .filter(|&id| id < start && !self.is_linked(id as u32))
            .collect();
        newly.sort_unstable();
        newly.dedup();
        linked.extend(newly.into_iter().map(|id| (id, id + 1)));
        let next = number_unlinked(&mut added, next, linkage_file)?;
        let mut sources = self.sources.clone();
        for (name, new) in added {
            if new.keys.is_empty() {
                continue;
            }
            let merged = match sources.get(&name) {
                Some(old) => {
                    let keys = datafusion::arrow::compute::concat(&[&old.keys, &new.keys])?
                        .as_string::<i64>()
                        .clone();
                    let mut ids = old.ids.clone();
                    ids.extend_from_slice(&new.ids);
                    SourceKeys {
                        keys,
                        ids,
                        lookup: OnceLock::new(),
                    }
                }
                None => new,
            };
            sources.insert(name, Arc::new(merged));
        }
        Ok(Ok(PersonIndex {
            persons: next,
            linked,
            sources,
        }))
    }

    /// Saves the index as one Parquet file per source in `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| CatalogError::state(dir, e))?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("person_key", DataType::LargeUtf8, false),
            Field::new("person_id", DataType::UInt32, false),
        ]));
        for (name, src) in &self.sources {
            let path = dir.join(format!("{name}.parquet"));
            let io = |e: &dyn std::fmt::Display| {
                CatalogError::state(&path, std::io::Error::other(e.to_string()))
            };
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(src.keys.clone()) as ArrayRef,
                    Arc::new(UInt32Array::from(src.ids.clone())),
                ],
            )
            .map_err(|e| io(&e))?;
            // A new file, never written through: the old one may be a hard
            // link shared with earlier state.
            let _ = std::fs::remove_file(&path);
            let file = File::create(&path).map_err(|e| CatalogError::state(&path, e))?;
            // Keys are distinct, and pseudonyms barely compress: neither
            // a dictionary nor compression would repay its time.
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_column_dictionary_enabled("person_key".into(), false)
                .set_column_compression("person_key".into(), Compression::UNCOMPRESSED)
                .build();
            let mut w =
                ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| io(&e))?;
            w.write(&batch).map_err(|e| io(&e))?;
            w.close().map_err(|e| io(&e))?;
        }
        let meta = serde_json::json!({
            "persons": self.persons,
            "linked": self.linked_persons(),
            "linked_ranges": self.linked,
        });
        let _ = std::fs::remove_file(dir.join("index.json"));
        std::fs::write(dir.join("index.json"), meta.to_string())
            .map_err(|e| CatalogError::state(dir, e))
    }

    /// Loads an index saved by [`PersonIndex::save`].
    pub fn load(dir: &Path, sources: &[String]) -> Result<PersonIndex> {
        let meta_path = dir.join("index.json");
        let bad = |p: &Path, e: &dyn std::fmt::Display| {
            CatalogError::state(p, std::io::Error::other(e.to_string()))
        };
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&meta_path).map_err(|e| CatalogError::state(&meta_path, e))?,
        )
        .map_err(|e| bad(&meta_path, &e))?;
        let mut map = HashMap::new();
        for name in sources {
            let path = dir.join(format!("{name}.parquet"));
            let file = File::open(&path).map_err(|e| CatalogError::state(&path, e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(1 << 20).build())
                .map_err(|e| bad(&path, &e))?;
            let mut key_parts: Vec<ArrayRef> = Vec::new();
            let mut ids = Vec::new();
            for batch in reader {
                let batch = batch.map_err(|e| bad(&path, &e))?;
                key_parts.push(batch.column(0).clone());
                ids.extend_from_slice(
                    batch
                        .column(1)
                        .as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
                        .values(),
                );
            }
            let refs: Vec<&dyn Array> = key_parts.iter().map(|a| a.as_ref()).collect();
            let keys = if refs.is_empty() {
                LargeStringArray::from(Vec::<&str>::new())
            } else {
                datafusion::arrow::compute::concat(&refs)
                    .map_err(|e| bad(&path, &e))?
                    .as_string::<i64>()
                    .clone()
            };
            map.insert(
                name.clone(),
                Arc::new(SourceKeys {
                    keys,
                    ids,
                    lookup: OnceLock::new(),
                }),
            );
        }
        let linked = match meta.get("linked_ranges") {
            Some(ranges) => {
                serde_json::from_value(ranges.clone()).map_err(|e| bad(&meta_path, &e))?
            }
            None => vec![(0, meta["linked"].as_u64().unwrap_or(0))],
        };
        Ok(PersonIndex {
            persons: meta["persons"].as_u64().unwrap_or(0),
            linked,
            sources: map,
        })
    }
}

/// A problem with a linkage row: a CSV line when `lines`, else a Parquet row.
fn link_error(file: &Path, lines: bool, row: u64, column: &str, problem: String) -> CatalogError {
    if lines {
        CatalogError::malformed(file, Some(column), Some(row), problem)
    } else {
        CatalogError::malformed_row(file, Some(column), row, problem)
    }
}

/// Each source's keys, none numbered yet.
fn unnumbered(keys: Vec<(String, LargeStringArray)>) -> HashMap<String, SourceKeys> {
    keys.into_iter()
        .map(|(name, keys)| {
            let n = keys.len();
            (
                name,
                SourceKeys {
                    keys,
                    ids: vec![u32::MAX; n],
                    lookup: OnceLock::new(),
                },
            )
        })
        .collect()
}

/// `keys` in ascending byte order, sorted on their first eight bytes as
/// integers and on the text only where those are equal.
pub(crate) fn sorted_keys(keys: &LargeStringArray) -> Result<LargeStringArray> {
    let order: Vec<(u64, u32)> = (0..keys.len())
        .map(|i| (prefix(keys.value(i)), i as u32))
        .collect();
    let order = sort_in_two(order, |a, b| {
        a.0.cmp(&b.0)
            .then_with(|| keys.value(a.1 as usize).cmp(keys.value(b.1 as usize)))
    });
    let indices = UInt32Array::from_iter_values(order.into_iter().map(|(_, i)| i));
    Ok(datafusion::arrow::compute::take(keys, &indices, None)?
        .as_string::<i64>()
        .clone())
}

/// The first eight bytes of `key` (zero-padded) as a big-endian integer:
/// ordered as the keys are, up to ties.
fn prefix(key: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

/// `v` sorted by `cmp`: its two halves sorted on two threads, then merged.
fn sort_in_two<T, F>(mut v: Vec<T>, cmp: F) -> Vec<T>
where
    T: Copy + Send,
    F: Fn(&T, &T) -> std::cmp::Ordering + Sync,
{
    if v.len() < 1 << 16 || crate::layout::cores() < 2 {
        v.sort_unstable_by(cmp);
        return v;
    }
    let mid = v.len() / 2;
    let (a, b) = v.split_at_mut(mid);
    std::thread::scope(|scope| {
        scope.spawn(|| a.sort_unstable_by(&cmp));
        b.sort_unstable_by(&cmp);
    });
    let mut out = Vec::with_capacity(v.len());
    let (mut i, mut j) = (0, mid);
    while i < mid && j < v.len() {
        if cmp(&v[j], &v[i]).is_lt() {
            out.push(v[j]);
            j += 1;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&v[i..mid]);
    out.extend_from_slice(&v[j..]);
    out
}

/// The position of each row's person key among its source's sorted keys
/// (`u32::MAX` when the source has no such key). The rows are sorted by
/// key and merged with the keys: sequential reads instead of one hash
/// probe, and its cache misses, per row.
fn positions_of(keys: &[&LargeStringArray], rows: &[(&str, &str, u32)]) -> Vec<u32> {
    let by_key: Vec<(u32, u64, u32)> = rows
        .iter()
        .enumerate()
        .map(|(i, &(key, _, src))| (src, prefix(key), i as u32))
        .collect();
    let by_key = sort_in_two(by_key, |a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| rows[a.2 as usize].0.cmp(rows[b.2 as usize].0))
    });
    let mut positions = vec![u32::MAX; rows.len()];
    for run in by_key.chunk_by(|a, b| a.0 == b.0) {
        let keys = keys[run[0].0 as usize];
        let mut j = 0;
        for &(_, p, i) in run {
            let key = rows[i as usize].0;
            while j < keys.len() && (prefix(keys.value(j)), keys.value(j)) < (p, key) {
                j += 1;
            }
            if j < keys.len() && keys.value(j) == key {
                positions[i as usize] = j as u32;
            }
        }
    }
    positions
}

/// Numbers the keys still without a number from `next` on, sources by name
/// and keys in their order; the next free number.
fn number_unlinked(
    sources: &mut HashMap<String, SourceKeys>,
    mut next: u64,
    linkage_file: &Path,
) -> Result<u64> {
    let mut names: Vec<String> = sources.keys().cloned().collect();
    names.sort();
    for name in &names {
        let Some(src) = sources.get_mut(name) else {
            continue;
        };
        for id in src.ids.iter_mut().filter(|id| **id == u32::MAX) {
            *id = next as u32;
            next += 1;
            if next >= u32::MAX as u64 {
                return Err(CatalogError::malformed(
                    linkage_file,
                    None,
                    None,
                    "the store has more persons than person_id can number (2^32 - 1)",
                ));
            }
        }
    }
    Ok(next)
}

/// Maps a source's delivered person keys to `person_id`: used inside the
/// views the engine shows, never called by name in SQL.
#[derive(Debug)]
pub struct PersonIdUdf {
    source: String,
    keys: Arc<SourceKeys>,
    signature: Signature,
}

impl PersonIdUdf {
    /// The lookup for one source.
    pub fn new(source: &str, keys: Arc<SourceKeys>) -> Self {
        Self {
            source: source.to_owned(),
            keys,
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl PartialEq for PersonIdUdf {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && Arc::ptr_eq(&self.keys, &other.keys)
    }
}
impl Eq for PersonIdUdf {}
impl std::hash::Hash for PersonIdUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl ScalarUDFImpl for PersonIdUdf {
    fn name(&self) -> &str {
        "tsunagu_person_id"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let lookup = |k: &str| self.keys.person_id(k).map(i64::from);
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(k)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Int64(k.as_deref().and_then(lookup)),
            )),
            ColumnarValue::Array(a) => {
                let a = if a.data_type() == &DataType::Utf8 {
                    a.clone()
                } else {
                    cast(a, &DataType::Utf8)?
                };
                let s = a.as_string::<i32>();
                let out: Int64Array = s.iter().map(|k| k.and_then(lookup)).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            other => exec_err!(
                "tsunagu_person_id: unexpected argument {}",
                other.data_type()
            ),
        }
    }
}

/// Where the derived index of a store lives inside its state folder.
pub fn index_dir(derived: &Path) -> PathBuf {
    derived.join("persons")
}

// Reading the linkage table.

/// The linkage table as Parquet files, and whether its rows are CSV lines.
pub(crate) struct LinkageFiles {
    pub files: Vec<PathBuf>,
    pub csv: bool,
}

/// The linkage table's files (`rel` under `root`); CSV lines are converted
/// once into `work` (reused when `reuse` and already there).
pub(crate) fn linkage_table(
    root: &Path,
    rel: &Path,
    work: &Path,
    reuse: bool,
) -> Result<LinkageFiles> {
    let path = root.join(rel);
    let shown = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| CatalogError::io(rel, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "parquet" || e == "csv"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.clone()]
    };
    if files.is_empty() {
        return Err(CatalogError::malformed(
            rel,
            None,
            None,
            "the linkage folder holds no Parquet or CSV file",
        ));
    }
    let csv = files[0].extension().is_some_and(|e| e == "csv");
    if !csv {
        return Ok(LinkageFiles { files, csv });
    }
    let out = work.join("tables").join("linkage.parquet");
    if reuse && out.is_file() {
        return Ok(LinkageFiles {
            files: vec![out],
            csv,
        });
    }
    std::fs::create_dir_all(out.parent().expect("has parent"))
        .map_err(|e| CatalogError::state(&out, e))?;
    csv_import::convert(&files, &shown, &|_| Some(DataType::Utf8), &out)?;
    Ok(LinkageFiles {
        files: vec![out],
        csv,
    })
}

/// Reads the linkage rows in file order and hands them, numbered, to `use_rows`.
pub(crate) fn read_links<T>(
    link: &LinkageFiles,
    rel: &Path,
    use_rows: impl for<'a> FnOnce(&mut dyn Iterator<Item = (u64, LinkRow<'a>)>) -> Result<T>,
) -> Result<T> {
    LinkRows::read(link, rel)?.use_rows(use_rows)
}

/// Batches of the linkage's (source, person_key, link_key) columns.
type Batches = Vec<[ArrayRef; 3]>;

/// The rows of a linkage table, read and checked: no value is missing.
pub(crate) struct LinkRows {
    columns: Vec<[ArrayRef; 3]>,
    csv: bool,
}

impl LinkRows {
    /// Hands the rows, in file order and numbered, to `use_rows`.
    pub(crate) fn use_rows<T>(
        &self,
        use_rows: impl for<'a> FnOnce(&mut dyn Iterator<Item = (u64, LinkRow<'a>)>) -> Result<T>,
    ) -> Result<T> {
        let csv = self.csv;
        let rows = self.columns.iter().flat_map(|cols| {
            let (s, p, l) = (
                cols[0].as_string::<i32>(),
                cols[1].as_string::<i32>(),
                cols[2].as_string::<i32>(),
            );
            (0..s.len()).map(move |i| LinkRow {
                source: s.value(i),
                person_key: p.value(i),
                link_key: l.value(i),
            })
        });
        let mut numbered = rows
            .enumerate()
            .map(|(i, r)| (if csv { i as u64 + 2 } else { i as u64 + 1 }, r));
        use_rows(&mut numbered)
    }

    /// Reads the linkage table's files, their row groups in parallel.
    pub(crate) fn read(link: &LinkageFiles, rel: &Path) -> Result<LinkRows> {
        const COLUMNS: [&str; 3] = ["source", "person_key", "link_key"];
        let started = std::time::Instant::now();
        let unreadable = |e: &dyn std::fmt::Display| {
            CatalogError::malformed(
                rel,
                None,
                None,
                format!("not a readable linkage table ({e})"),
            )
        };
        // Each file's columns, checked, and its row groups: read in parallel.
        let mut parts: Vec<(&Path, ProjectionMask, usize)> = Vec::new();
        for f in &link.files {
            let file = std::fs::File::open(f).map_err(|e| CatalogError::io(rel, e))?;
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| unreadable(&e))?;
            let schema = builder.schema().clone();
            let mut idx = [0usize; 3];
            for (i, c) in COLUMNS.iter().enumerate() {
                let Some((pos, field)) = schema.column_with_name(c) else {
                    return Err(CatalogError::malformed(
                        rel,
                        Some(c),
                        None,
                        "the linkage table lacks this column",
                    ));
                };
                let t = field.data_type();
                if !(tables::normalize(t) == Some(DataType::Utf8) || t.is_integer()) {
                    return Err(CatalogError::malformed(
                        rel,
                        Some(c),
                        None,
                        "the column must be text",
                    ));
                }
                idx[i] = pos;
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), idx);
            for group in 0..builder.metadata().num_row_groups() {
                parts.push((f.as_path(), mask.clone(), group));
            }
        }
        let read_part = |(f, mask, group): &(&Path, ProjectionMask, usize)| -> Result<Batches> {
            let file = std::fs::File::open(f).map_err(|e| CatalogError::io(rel, e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| unreadable(&e))?
                .with_projection(mask.clone())
                .with_row_groups(vec![*group])
                .with_batch_size(1 << 16)
                .build()
                .map_err(|e| unreadable(&e))?;
            let mut columns = Vec::new();
            for batch in reader {
                let batch = batch.map_err(|e| unreadable(&e))?;
                let get = |name: &str| -> Result<ArrayRef> {
                    let a = batch.column_by_name(name).expect("projected");
                    Ok(cast(a, &DataType::Utf8)?)
                };
                columns.push([get("source")?, get("person_key")?, get("link_key")?]);
            }
            Ok(columns)
        };
        let threads = crate::layout::cores().clamp(1, parts.len().max(1));
        let read: Vec<Vec<(usize, Result<Batches>)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let parts = &parts;
                    let read_part = &read_part;
                    scope.spawn(move || {
                        (t..parts.len())
                            .step_by(threads)
                            .map(|i| (i, read_part(&parts[i])))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| vec![(0, Err(unreadable(&"a reader failed")))])
                })
                .collect()
        });
        let mut read: Vec<(usize, Result<Batches>)> = read.into_iter().flatten().collect();
        read.sort_by_key(|(i, _)| *i);
        let mut columns: Vec<[ArrayRef; 3]> = Vec::new();
        for (_, part) in read {
            columns.extend(part?);
        }
        log::debug!("linkage read in {:.1?}", started.elapsed());
        // Reject NULLs up front, naming the row.
        let mut row = 0u64;
        for cols in &columns {
            if cols.iter().all(|c| c.null_count() == 0) {
                row += cols[0].len() as u64;
                continue;
            }
            for i in 0..cols[0].len() {
                row += 1;
                for (c, name) in cols.iter().zip(COLUMNS) {
                    if c.is_null(i) {
                        let place = if link.csv { row + 1 } else { row };
                        return Err(if link.csv {
                            CatalogError::malformed(
                                rel,
                                Some(name),
                                Some(place),
                                "the value is missing",
                            )
                        } else {
                            CatalogError::malformed_row(
                                rel,
                                Some(name),
                                place,
                                "the value is missing",
                            )
                        });
                    }
                }
            }
        }
        Ok(LinkRows {
            columns,
            csv: link.csv,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_positions_equal_a_search_of_each_key() {
        // Keys sharing long prefixes, keys shorter than a prefix, keys
        // absent from the source, repeated rows and an empty source.
        let mut a: Vec<String> = (0..300).map(|i| format!("key-{:05}", i * 7)).collect();
        a.extend(["", "k", "key-", "\u{e9}t\u{e9}"].map(String::from));
        a.sort();
        let b: Vec<String> = vec!["only".into()];
        let sources = [
            keys(&a.iter().map(String::as_str).collect::<Vec<_>>()),
            keys(&[]),
            keys(&b.iter().map(String::as_str).collect::<Vec<_>>()),
        ];
        let wanted: Vec<String> = (0..2200).map(|i| format!("key-{:05}", i)).collect();
        let mut rows: Vec<(&str, &str, u32)> = Vec::new();
        for (i, w) in wanted.iter().enumerate().rev() {
            rows.push((w, "L", (i % 3) as u32));
        }
        for extra in ["", "k", "key-", "\u{e9}t\u{e9}", "only", "key-00007", "zz"] {
            for src in 0..3 {
                rows.push((extra, "L", src));
            }
        }
        let refs: Vec<&LargeStringArray> = sources.iter().collect();
        let found = positions_of(&refs, &rows);
        for (&(key, _, src), &pos) in rows.iter().zip(&found) {
            let keys = refs[src as usize];
            let expected = (0..keys.len()).find(|&j| keys.value(j) == key);
            assert_eq!(
                expected.map(|j| j as u32).unwrap_or(u32::MAX),
                pos,
                "{key:?} in {src}"
            );
        }
        assert!(found.iter().filter(|&&p| p != u32::MAX).count() > 100);
    }

    #[test]
    fn sorted_keys_are_in_arrow_sort_order() {
        let mut v: Vec<String> = (0..500)
            .map(|i: u64| format!("{:x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        v.extend((0..50).map(|i| format!("same-prefix-{}", 49 - i)));
        v.extend(["", "a", "\u{e9}", "same-pre"].map(String::from));
        let keys = keys(&v.iter().map(String::as_str).collect::<Vec<_>>());
        let expected = datafusion::arrow::compute::sort(&keys, None).unwrap();
        let sorted = sorted_keys(&keys).unwrap();
        assert_eq!(&sorted as &dyn Array, expected.as_ref());
    }

    #[test]
    fn sorting_in_two_halves_sorts() {
        let v: Vec<(u32, u64)> = (0..200_003u64)
            .map(|i| ((i % 7) as u32, i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40))
            .collect();
        let mut expected = v.clone();
        expected.sort();
        assert_eq!(sort_in_two(v, |a, b| a.cmp(b)), expected);
    }

    #[test]
    fn key_prefixes_order_keys_as_their_bytes_do() {
        let keys = [
            "",
            "a",
            "a\0",
            "a\0\0\0\0\0\0\0b",
            "ab",
            "abcdefgh",
            "abcdefgh0",
            "abcdefgi",
            "b",
            "\u{e9}",
            "ff",
            "f0",
        ];
        for a in keys {
            for b in keys {
                let by_prefix = (prefix(a), a).cmp(&(prefix(b), b));
                assert_eq!(by_prefix, a.as_bytes().cmp(b.as_bytes()), "{a:?} {b:?}");
            }
        }
    }

    fn keys(v: &[&str]) -> LargeStringArray {
        LargeStringArray::from(v.to_vec())
    }

    #[test]
    fn numbering_follows_the_contract() {
        let links = [
            ("b", "k2", "L2"),
            ("a", "k1", "L2"),
            ("a", "k3", "L1"),
            ("a", "zz", "L0"), // key appears nowhere: ignored
        ];
        let idx = PersonIndex::build(
            vec![
                ("b".into(), keys(&["k1", "k2"])),
                ("a".into(), keys(&["k1", "k2", "k3"])),
            ],
            links.iter().enumerate().map(|(i, (s, p, l))| {
                (
                    i as u64 + 2,
                    LinkRow {
                        source: s,
                        person_key: p,
                        link_key: l,
                    },
                )
            }),
            Path::new("link.csv"),
            true,
        )
        .unwrap();
        let a = idx.source("a").unwrap();
        let b = idx.source("b").unwrap();
        assert_eq!(a.person_id("k3"), Some(0)); // L1
        assert_eq!(a.person_id("k1"), Some(1)); // L2
        assert_eq!(b.person_id("k2"), Some(1)); // L2
        assert_eq!(a.person_id("k2"), Some(2)); // unlinked, source a first
        assert_eq!(b.person_id("k1"), Some(3));
        assert_eq!(idx.persons(), 4);
        assert_eq!(idx.linked_persons(), 2);
        assert_eq!(a.person_id("nope"), None);
    }

    #[test]
    fn conflicting_and_unknown_links_are_refused() {
        let build = |links: &[(&str, &str, &str)]| {
            PersonIndex::build(
                vec![("a".into(), keys(&["k1"]))],
                links.iter().enumerate().map(|(i, (s, p, l))| {
                    (
                        i as u64 + 2,
                        LinkRow {
                            source: s,
                            person_key: p,
                            link_key: l,
                        },
                    )
                }),
                Path::new("link.csv"),
                true,
            )
        };
        let e = build(&[("x", "k1", "L")]).unwrap_err().to_string();
        assert!(e.contains("link.csv, line 2, column source"), "{e}");
        let e = build(&[("a", "k1", "L"), ("a", "k1", "M")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("two different link keys"), "{e}");
    }

    #[test]
    fn save_and_load_round_trip() {
        let idx = PersonIndex::build(
            vec![("a".into(), keys(&["x", "y"]))],
            std::iter::empty(),
            Path::new("l"),
            true,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        idx.save(dir.path()).unwrap();
        let back = PersonIndex::load(dir.path(), &["a".into()]).unwrap();
        assert_eq!(back.persons(), 2);
        assert_eq!(back.source("a").unwrap().person_id("y"), Some(1));
    }
}
