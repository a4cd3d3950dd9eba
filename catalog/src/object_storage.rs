//! Stores on S3-compatible object storage.
//!
//! A store given as `s3://bucket/prefix` is opened with the same manifest
//! and the same checks as a folder. The derived state is kept beside the
//! store, under `prefix/_tsunagu/derived/<fingerprint>/`: the first machine
//! to open a store copies its objects into a local folder (only objects
//! whose size or modification time changed are fetched again), derives the
//! state from them and writes it there. Later machines fetch that state and
//! keep only an *outline* of the store ([`LocalCopy`]): the manifest and the
//! vocabulary whole, and of the other files their size, modification time
//! and Parquet footer. Plans read the delivered files and the person layout
//! from object storage ([`ObjectStorage::file_urls`]), so the workers of a
//! cluster need no shared folder and no copy of the data.
//!
//! The client is configured from the usual `AWS_*` variables (endpoint,
//! region, keys, `AWS_ALLOW_HTTP`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use url::Url;

use crate::deliveries::Built;
use crate::error::{CatalogError, Result};

/// The folder beside a store's objects that holds its derived state.
pub const STATE_PREFIX: &str = "_tsunagu";

/// Files at least this large are uploaded in parts.
const PART_BYTES: usize = 8 << 20;

/// Objects fetched at the same time.
const PARALLEL_FETCHES: usize = 8;

/// The tail of a Parquet object read first for its footer: most footers fit.
const FOOTER_HINT: u64 = 64 << 10;

/// How an object is kept in a local folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalCopy {
    /// All its bytes.
    Whole,
    /// A sparse file of the object's size holding only its Parquet footer:
    /// enough to read its schema and row count, not its rows.
    Footer,
    /// A sparse file of the object's size holding nothing.
    Empty,
}

/// One object of a store (not of its derived state).
#[derive(Debug, Clone)]
pub struct StoreObject {
    /// The path below the store's prefix.
    pub rel: String,
    pub size: u64,
    pub modified: SystemTime,
    key: ObjectPath,
}

impl StoreObject {
    /// The line [`crate::state::entries`] gives a local copy of this object.
    pub fn entry(&self) -> String {
        let nanos = self
            .modified
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{}\t{}\t{}", self.rel, self.size, nanos)
    }
}

/// The store location when `location` is an object-storage URL.
pub fn store_url(location: &Path) -> Option<&str> {
    let s = location.to_str()?;
    s.contains("://").then_some(s)
}

/// A store on S3-compatible object storage.
#[derive(Debug)]
pub struct ObjectStorage {
    /// `s3://bucket/prefix/`.
    url: Url,
    /// `s3://bucket/`, the URL the client is registered for.
    bucket: Url,
    prefix: ObjectPath,
    store: Arc<dyn ObjectStore>,
}

impl ObjectStorage {
    /// The store at `location` (`s3://bucket/prefix`), with a client
    /// configured from the environment.
    pub fn from_env(location: &str) -> Result<Self> {
        let bad = |why: &str| CatalogError::object_store(location, why);
        let mut url = Url::parse(location).map_err(|_| bad("not a URL"))?;
        if url.scheme() != "s3" {
            return Err(bad(
                "only s3:// stores are supported (S3 or an S3-compatible server)",
            ));
        }
        let bucket_name = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("the URL names no bucket"))?
            .to_owned();
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(bad("the URL must be s3://bucket/prefix, nothing more"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket_name)
            .build()
            .map_err(|e| CatalogError::object_store(location, e))?;
        let bucket = Url::parse(&format!("s3://{bucket_name}/")).map_err(|_| bad("bad bucket"))?;
        let prefix = ObjectPath::from(url.path().trim_matches('/'));
        Ok(ObjectStorage {
            url,
            bucket,
            prefix,
            store: Arc::new(store),
        })
    }

    /// `s3://bucket/prefix/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL to register the client under, and the client: sessions that
    /// run plans over this store need both.
    pub fn client(&self) -> (Url, Arc<dyn ObjectStore>) {
        (self.bucket.clone(), self.store.clone())
    }

    /// How plans name local files: those of the store's local copy or
    /// outline `mirror` and of the state folder `derived_root` are read from
    /// their objects.
    pub fn file_urls(&self, mirror: &Path, derived_root: &Path) -> FileUrls {
        FileUrls(vec![
            (
                derived_root.to_path_buf(),
                format!("{}{STATE_PREFIX}/derived/", self.url),
            ),
            (mirror.to_path_buf(), self.url.to_string()),
        ])
    }

    fn key(&self, rel: &str) -> ObjectPath {
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{prefix}/{rel}"))
        }
    }

    /// The path of `key` below the store's prefix.
    fn relative(&self, key: &ObjectPath) -> Option<String> {
        let prefix = self.prefix.as_ref();
        let key = key.as_ref();
        if prefix.is_empty() {
            return Some(key.to_owned());
        }
        key.strip_prefix(prefix)?
            .strip_prefix('/')
            .map(str::to_owned)
    }

    fn failed(&self, key: &ObjectPath, e: impl std::fmt::Display) -> CatalogError {
        CatalogError::object_store(format!("{}{}", self.bucket, key), e)
    }

    async fn list(&self, rel: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = if rel.is_empty() {
            self.prefix.clone()
        } else {
            self.key(rel)
        };
        let mut out = Vec::new();
        let mut listing = self.store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            out.push(meta.map_err(|e| self.failed(&prefix, e))?);
        }
        Ok(out)
    }

    /// The store's objects (not its derived state), sorted by path. A
    /// prefix without `rwd.toml` holds no store.
    pub async fn objects(&self) -> Result<Vec<StoreObject>> {
        let mut out = Vec::new();
        for meta in self.list("").await? {
            let Some(rel) = self.relative(&meta.location) else {
                continue;
            };
            if rel.starts_with(&format!("{STATE_PREFIX}/")) || rel.ends_with('/') {
                continue;
            }
            out.push(StoreObject {
                rel,
                size: meta.size,
                modified: SystemTime::from(meta.last_modified),
                key: meta.location,
            });
        }
        if !out.iter().any(|o| o.rel == "rwd.toml") {
            return Err(CatalogError::object_store(
                self.url.as_str(),
                "no store here: there is no rwd.toml under this prefix",
            ));
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    /// Brings `objects` into `dir`, each kept as `how` says: objects whose
    /// size or modification time differ from the local copy, or kept
    /// otherwise before, are fetched (several at a time). How each is kept
    /// is recorded in `record` (a whole copy when not recorded). A copy
    /// keeps its object's size and modification time, so every machine
    /// computes the same fingerprint. Local files of no object are left; see
    /// [`ObjectStorage::remove_others`].
    pub async fn mirror(
        &self,
        dir: &Path,
        record: &Path,
        objects: &[StoreObject],
        how: impl Fn(&str) -> LocalCopy,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| CatalogError::state(dir, e))?;
        let mut kept = read_record(record);
        let mut fetches = Vec::new();
        for o in objects {
            let local = dir.join(&o.rel);
            let copy = how(&o.rel);
            let was = kept.get(&o.rel).copied().unwrap_or(LocalCopy::Whole);
            if was != copy || !unchanged(&local, o.size, o.modified) {
                fetches.push(async move {
                    self.download(&o.key, &local, o.size, Some(o.modified), copy)
                        .await
                        .map(|()| (o.rel.as_str(), copy))
                });
            }
        }
        let mut running = futures::stream::iter(fetches).buffer_unordered(PARALLEL_FETCHES);
        let mut failed = None;
        while let Some(done) = running.next().await {
            match done {
                Ok((rel, copy)) => {
                    kept.insert(rel.to_owned(), copy);
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        drop(running);
        write_record(record, &kept)?;
        failed.map_or(Ok(()), Err)
    }

    /// Removes the files under `dir` that are copies of none of `objects`,
    /// and their lines in `record`.
    pub fn remove_others(dir: &Path, record: &Path, objects: &[StoreObject]) -> Result<()> {
        let keep: Vec<PathBuf> = objects.iter().map(|o| dir.join(&o.rel)).collect();
        remove_others(dir, &keep)?;
        let mut kept = read_record(record);
        let before = kept.len();
        kept.retain(|rel, _| objects.iter().any(|o| o.rel == *rel));
        if kept.len() == before {
            return Ok(());
        }
        write_record(record, &kept)
    }

    /// The record (`complete.json`) of the derived state of `fingerprint`
    /// beside the store, when that state is complete.
    pub async fn state_record(&self, fingerprint: &str) -> Result<Option<Vec<u8>>> {
        let complete = self.key(&format!(
            "{STATE_PREFIX}/derived/{fingerprint}/complete.json"
        ));
        match self.store.get(&complete).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(|e| self.failed(&complete, e))?;
                Ok(Some(bytes.to_vec()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed(&complete, e)),
        }
    }

    /// Fetches the derived state of `fingerprint` into
    /// `derived_root/<fingerprint>` when it is complete on object storage,
    /// the files of its person layout kept as `layout` says (plans read
    /// them from object storage). Returns false when there is none.
    pub async fn fetch_state(
        &self,
        derived_root: &Path,
        fingerprint: &str,
        layout: LocalCopy,
    ) -> Result<bool> {
        let rel = format!("{STATE_PREFIX}/derived/{fingerprint}");
        if self.state_record(fingerprint).await?.is_none() {
            return Ok(false);
        }
        let target = derived_root.join(fingerprint);
        let work = crate::state::temp_sibling(&target);
        let listed = self.list(&rel).await?;
        let mut fetches = Vec::new();
        for meta in &listed {
            let Some(inner) = self
                .relative(&meta.location)
                .and_then(|r| r.strip_prefix(&format!("{rel}/")).map(str::to_owned))
            else {
                continue;
            };
            let copy = if inner.starts_with("layout/") && inner.ends_with(".parquet") {
                layout
            } else {
                LocalCopy::Whole
            };
            let local = work.join(inner);
            fetches.push(async move {
                self.download(&meta.location, &local, meta.size, None, copy)
                    .await
            });
        }
        let mut running = futures::stream::iter(fetches).buffer_unordered(PARALLEL_FETCHES);
        while let Some(done) = running.next().await {
            if let Err(e) = done {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e);
            }
        }
        match std::fs::rename(&work, &target) {
            Ok(()) => Ok(true),
            // Another process put the same state in place first.
            Err(_) if target.join("complete.json").is_file() => {
                let _ = std::fs::remove_dir_all(&work);
                Ok(true)
            }
            Err(e) => Err(CatalogError::state(&target, e)),
        }
    }

    /// Writes the derived state in `derived` (named by its fingerprint)
    /// beside the store, unless it is there already; `complete.json` last,
    /// so a partial upload is never taken for state. Returns the record of
    /// the state found there, if any.
    pub async fn publish_state(&self, derived: &Path, fingerprint: &str) -> Result<Option<Built>> {
        let rel = format!("{STATE_PREFIX}/derived/{fingerprint}");
        let complete = self.key(&format!("{rel}/complete.json"));
        match self.store.get(&complete).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(|e| self.failed(&complete, e))?;
                let built =
                    serde_json::from_slice(&bytes).map_err(|e| self.failed(&complete, e))?;
                return Ok(Some(built));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.failed(&complete, e)),
        }
        let mut files = Vec::new();
        local_files(derived, &mut files)?;
        files.sort_by_key(|f| f.file_name().is_some_and(|n| n == "complete.json"));
        for file in files {
            let inner = file.strip_prefix(derived).unwrap_or(&file);
            let key = self.key(&format!("{rel}/{}", inner.to_string_lossy()));
            self.upload(&file, &key).await?;
        }
        Ok(None)
    }

    /// Writes object `key` (of `size` bytes) to `local`, kept as `copy`
    /// says, through a temporary file.
    async fn download(
        &self,
        key: &ObjectPath,
        local: &Path,
        size: u64,
        modified: Option<SystemTime>,
        copy: LocalCopy,
    ) -> Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let parent = local.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| CatalogError::state(parent, e))?;
        let tmp = crate::state::temp_sibling(local);
        let mut file = std::fs::File::create(&tmp).map_err(|e| CatalogError::state(&tmp, e))?;
        let written = async {
            match copy {
                LocalCopy::Whole => {
                    let mut body = self
                        .store
                        .get(key)
                        .await
                        .map_err(|e| self.failed(key, e))?
                        .into_stream();
                    while let Some(chunk) = body.next().await {
                        let chunk = chunk.map_err(|e| self.failed(key, e))?;
                        file.write_all(&chunk)
                            .map_err(|e| CatalogError::state(&tmp, e))?;
                    }
                }
                LocalCopy::Footer => {
                    let footer = self.footer(key, size).await?;
                    file.set_len(size)
                        .and_then(|()| file.seek(SeekFrom::Start(size - footer.len() as u64)))
                        .and_then(|_| file.write_all(&footer))
                        .map_err(|e| CatalogError::state(&tmp, e))?;
                }
                LocalCopy::Empty => file
                    .set_len(size)
                    .map_err(|e| CatalogError::state(&tmp, e))?,
            }
            if let Some(t) = modified {
                file.set_modified(t)
                    .map_err(|e| CatalogError::state(&tmp, e))?;
            }
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, local).map_err(|e| CatalogError::state(local, e))
    }

    /// The last bytes of Parquet object `key` (of `size` bytes): its
    /// footer's metadata, their length and the closing magic.
    async fn footer(&self, key: &ObjectPath, size: u64) -> Result<Vec<u8>> {
        let not_parquet = || self.failed(key, "not a Parquet file (no footer at its end)");
        if size < 12 {
            return Err(not_parquet());
        }
        let tail = size.min(FOOTER_HINT);
        let bytes = self
            .store
            .get_range(key, size - tail..size)
            .await
            .map_err(|e| self.failed(key, e))?;
        let end = &bytes[bytes.len() - 8..];
        if &end[4..] != b"PAR1" {
            return Err(not_parquet());
        }
        let metadata = u64::from(u32::from_le_bytes([end[0], end[1], end[2], end[3]]));
        let wanted = metadata + 8;
        if wanted > size - 4 {
            return Err(not_parquet());
        }
        if wanted <= tail {
            return Ok(bytes[bytes.len() - wanted as usize..].to_vec());
        }
        let bytes = self
            .store
            .get_range(key, size - wanted..size)
            .await
            .map_err(|e| self.failed(key, e))?;
        Ok(bytes.to_vec())
    }

    async fn upload(&self, file: &Path, key: &ObjectPath) -> Result<()> {
        use std::io::Read;
        let len = std::fs::metadata(file)
            .map_err(|e| CatalogError::state(file, e))?
            .len();
        let mut reader = std::fs::File::open(file).map_err(|e| CatalogError::state(file, e))?;
        if len < PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| CatalogError::state(file, e))?;
            self.store
                .put(key, PutPayload::from(bytes))
                .await
                .map_err(|e| self.failed(key, e))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.failed(key, e))?;
        let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| CatalogError::state(file, e))?;
            if n == 0 {
                break;
            }
            parts
                .wait_for_capacity(4)
                .await
                .map_err(|e| self.failed(key, e))?;
            parts.write(&buf[..n]);
        }
        parts.finish().await.map_err(|e| self.failed(key, e))?;
        Ok(())
    }
}

/// Local folders whose files plans read from object storage instead: each
/// folder and the URL its files are under.
#[derive(Debug, Clone, Default)]
pub struct FileUrls(Vec<(PathBuf, String)>);

impl FileUrls {
    /// The name plans give `file`: its URL when it is under a mapped
    /// folder, else the file itself.
    pub fn of(&self, file: &Path) -> PathBuf {
        for (folder, url) in &self.0 {
            if let Ok(rel) = file.strip_prefix(folder) {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                return PathBuf::from(format!("{url}{}", rel.join("/")));
            }
        }
        file.to_path_buf()
    }

    /// True when no folder is mapped.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How the copies of a folder are kept, as recorded: `whole`, `footer` or
/// `empty`, a tab, the object's path.
fn read_record(record: &Path) -> std::collections::HashMap<String, LocalCopy> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (kind, rel) = l.split_once('\t')?;
            let copy = match kind {
                "whole" => LocalCopy::Whole,
                "footer" => LocalCopy::Footer,
                "empty" => LocalCopy::Empty,
                _ => return None,
            };
            Some((rel.to_owned(), copy))
        })
        .collect()
}

fn write_record(record: &Path, kept: &std::collections::HashMap<String, LocalCopy>) -> Result<()> {
    let mut lines: Vec<String> = kept
        .iter()
        .map(|(rel, copy)| {
            let kind = match copy {
                LocalCopy::Whole => "whole",
                LocalCopy::Footer => "footer",
                LocalCopy::Empty => "empty",
            };
            format!("{kind}\t{rel}\n")
        })
        .collect();
    lines.sort();
    crate::state::write_atomic(record, lines.concat().as_bytes())
}

/// True when `local` exists with `size` bytes and modification time `modified`.
fn unchanged(local: &Path, size: u64, modified: SystemTime) -> bool {
    std::fs::metadata(local)
        .ok()
        .is_some_and(|m| m.len() == size && m.modified().ok() == Some(modified))
}

fn local_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| CatalogError::state(dir, e))? {
        let path = entry.map_err(|e| CatalogError::state(dir, e))?.path();
        if path.is_dir() {
            local_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Removes the files under `dir` that are not in `keep`, and emptied folders.
fn remove_others(dir: &Path, keep: &[PathBuf]) -> Result<()> {
    let mut files = Vec::new();
    local_files(dir, &mut files)?;
    let keep: std::collections::HashSet<&PathBuf> = keep.iter().collect();
    for f in files.iter().filter(|f| !keep.contains(f)) {
        std::fs::remove_file(f).map_err(|e| CatalogError::state(f, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use object_store::memory::InMemory;

    /// A store at `s3://b/p/` whose objects are held in memory.
    fn in_memory() -> (ObjectStorage, Arc<InMemory>) {
        let objects = Arc::new(InMemory::new());
        let storage = ObjectStorage {
            url: Url::parse("s3://b/p/").unwrap(),
            bucket: Url::parse("s3://b/").unwrap(),
            prefix: ObjectPath::from("p"),
            store: objects.clone(),
        };
        (storage, objects)
    }

    fn parquet_bytes(rows: i64) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter([(
            "n",
            Arc::new(Int64Array::from_iter_values(0..rows)) as _,
        )])
        .unwrap();
        let mut out = Vec::new();
        let mut writer =
            datafusion::parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None)
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    }

    #[tokio::test]
    async fn an_outline_keeps_sizes_times_and_footers_and_so_the_fingerprint() {
        let (storage, objects) = in_memory();
        let table = parquet_bytes(50_000);
        let put = |key: &str, bytes: Vec<u8>| {
            let objects = objects.clone();
            let key = ObjectPath::from(key);
            async move { objects.put(&key, PutPayload::from(bytes)).await.unwrap() }
        };
        put("p/rwd.toml", b"[store]\n".to_vec()).await;
        put("p/ndb/drug.parquet", table.clone()).await;
        put("p/ndb/visit.csv", b"person_key,day\nA,1\n".to_vec()).await;
        put("p/_tsunagu/derived/x/complete.json", b"{}".to_vec()).await;
        put("other/rwd.toml", b"".to_vec()).await;
        let listed = storage.objects().await.unwrap();
        let names: Vec<&str> = listed.iter().map(|o| o.rel.as_str()).collect();
        assert_eq!(names, ["ndb/drug.parquet", "ndb/visit.csv", "rwd.toml"]);

        let dir = tempfile::tempdir().unwrap();
        let (copy, record) = (dir.path().join("objects"), dir.path().join("copies.tsv"));
        let outline = |rel: &str| match Path::new(rel).extension().and_then(|e| e.to_str()) {
            Some("parquet") => LocalCopy::Footer,
            Some("csv") => LocalCopy::Empty,
            _ => LocalCopy::Whole,
        };
        storage
            .mirror(&copy, &record, &listed, outline)
            .await
            .unwrap();
        // Every machine computes the store's fingerprint from an outline.
        let entries: Vec<String> = listed.iter().map(|o| o.entry()).collect();
        assert_eq!(
            crate::state::fingerprint(&copy).unwrap(),
            crate::state::fingerprint_of(&entries)
        );
        // The footer copy: the object's size, its schema and row count, and
        // none of its other bytes.
        let local = std::fs::read(copy.join("ndb/drug.parquet")).unwrap();
        assert_eq!(local.len(), table.len());
        let (schema, rows) = crate::files::parquet_schema(
            &copy.join("ndb/drug.parquet"),
            Path::new("ndb/drug.parquet"),
        )
        .unwrap();
        assert_eq!((schema.field(0).name().as_str(), rows), ("n", 50_000));
        let footer = u32::from_le_bytes(table[table.len() - 8..table.len() - 4].try_into().unwrap())
            as usize
            + 8;
        assert!(footer < table.len() / 10, "a footer of {footer} bytes");
        assert!(local[..table.len() - footer].iter().all(|b| *b == 0));
        assert_eq!(local[table.len() - footer..], table[table.len() - footer..]);
        let csv = std::fs::read(copy.join("ndb/visit.csv")).unwrap();
        assert_eq!((csv.len(), csv.iter().all(|b| *b == 0)), (19, true));
        assert_eq!(std::fs::read(copy.join("rwd.toml")).unwrap(), b"[store]\n");

        // Wanted whole later, a copy kept otherwise is fetched again.
        storage
            .mirror(&copy, &record, &listed, |_| LocalCopy::Whole)
            .await
            .unwrap();
        assert_eq!(std::fs::read(copy.join("ndb/drug.parquet")).unwrap(), table);
        assert_eq!(
            std::fs::read(copy.join("ndb/visit.csv")).unwrap(),
            b"person_key,day\nA,1\n"
        );

        // An object that is no Parquet file has no footer to keep.
        let e = storage
            .mirror(&copy, &record, &listed, |_| LocalCopy::Footer)
            .await
            .expect_err("the manifest and the CSV file have no footer")
            .to_string();
        let named = ["s3://b/p/rwd.toml", "s3://b/p/ndb/visit.csv"];
        assert!(named.iter().any(|n| e.contains(n)), "{e}");
        assert!(e.contains("not a Parquet file"), "{e}");
    }

    #[test]
    fn plans_name_mirrored_and_derived_files_by_their_objects() {
        let urls = FileUrls(vec![
            ("/s/derived".into(), "s3://b/p/_tsunagu/derived/".into()),
            ("/s/objects".into(), "s3://b/p/".into()),
        ]);
        assert_eq!(
            urls.of(Path::new("/s/objects/ndb/drug.parquet")),
            PathBuf::from("s3://b/p/ndb/drug.parquet")
        );
        assert_eq!(
            urls.of(Path::new("/s/derived/abc/layout/x/0.parquet")),
            PathBuf::from("s3://b/p/_tsunagu/derived/abc/layout/x/0.parquet")
        );
        assert_eq!(
            urls.of(Path::new("/elsewhere/a")),
            PathBuf::from("/elsewhere/a")
        );
    }

    #[test]
    fn a_store_url_is_s3_with_a_bucket() {
        for bad in ["http://b/p", "s3:///p", "s3://b/p?x=1", "not a url"] {
            let e = ObjectStorage::from_env(bad).expect_err(bad).to_string();
            assert!(e.contains(bad), "{e}");
        }
        let s = ObjectStorage::from_env("s3://bucket/a/store").unwrap();
        assert_eq!(s.url().as_str(), "s3://bucket/a/store/");
        assert_eq!(s.client().0.as_str(), "s3://bucket/");
        assert_eq!(
            s.relative(&ObjectPath::from("a/store/ndb/x.parquet")),
            Some("ndb/x.parquet".into())
        );
        assert_eq!(s.relative(&ObjectPath::from("a/storeX/y")), None);
    }
}
