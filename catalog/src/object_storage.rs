//! Stores on S3-compatible object storage.
//!
//! A store given as `s3://bucket/prefix` is opened with the same manifest
//! and the same checks as a folder. Its objects are mirrored into a local
//! folder (only objects whose size or modification time changed are fetched
//! again), from which the state is derived. The derived state is kept beside
//! the store, under `prefix/_tsunagu/derived/<fingerprint>/`: the first
//! machine to open a store writes it there, later ones fetch it instead of
//! deriving it again. Plans read the delivered files and the person layout
//! from object storage ([`ObjectStorage::file_urls`]), so the workers of a
//! cluster need no shared folder.
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

    /// How plans name local files: the store's mirror `mirror` and the
    /// state folder `derived_root` (`<state>/derived`) are read from their
    /// objects.
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

    /// Brings the store's objects (not its derived state) into `dir`:
    /// objects whose size or modification time differ from the local copy
    /// are fetched; local files without an object are removed. A copy keeps
    /// its object's modification time, so every machine computes the same
    /// fingerprint.
    pub async fn mirror(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| CatalogError::state(dir, e))?;
        let mut wanted = Vec::new();
        for meta in self.list("").await? {
            let Some(rel) = self.relative(&meta.location) else {
                continue;
            };
            if rel.starts_with(&format!("{STATE_PREFIX}/")) || rel.ends_with('/') {
                continue;
            }
            let local = dir.join(&rel);
            let modified = SystemTime::from(meta.last_modified);
            if !unchanged(&local, meta.size, modified) {
                self.download(&meta.location, &local, Some(modified))
                    .await?;
            }
            wanted.push(local);
        }
        if !wanted.iter().any(|f| f == &dir.join("rwd.toml")) {
            return Err(CatalogError::object_store(
                self.url.as_str(),
                "no store here: there is no rwd.toml under this prefix",
            ));
        }
        remove_others(dir, &wanted)
    }

    /// Fetches the derived state of `fingerprint` into
    /// `derived_root/<fingerprint>` when it is complete on object storage.
    /// Returns false when there is none.
    pub async fn fetch_state(&self, derived_root: &Path, fingerprint: &str) -> Result<bool> {
        let rel = format!("{STATE_PREFIX}/derived/{fingerprint}");
        let complete = self.key(&format!("{rel}/complete.json"));
        match self.store.head(&complete).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.failed(&complete, e)),
        }
        let target = derived_root.join(fingerprint);
        let work = crate::state::temp_sibling(&target);
        for meta in self.list(&rel).await? {
            let Some(inner) = self
                .relative(&meta.location)
                .and_then(|r| r.strip_prefix(&format!("{rel}/")).map(str::to_owned))
            else {
                continue;
            };
            self.download(&meta.location, &work.join(inner), None)
                .await?;
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

    async fn download(
        &self,
        key: &ObjectPath,
        local: &Path,
        modified: Option<SystemTime>,
    ) -> Result<()> {
        use std::io::Write;
        let parent = local.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| CatalogError::state(parent, e))?;
        let tmp = crate::state::temp_sibling(local);
        let mut file = std::fs::File::create(&tmp).map_err(|e| CatalogError::state(&tmp, e))?;
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
        if let Some(t) = modified {
            file.set_modified(t)
                .map_err(|e| CatalogError::state(&tmp, e))?;
        }
        drop(file);
        std::fs::rename(&tmp, local).map_err(|e| CatalogError::state(local, e))
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
