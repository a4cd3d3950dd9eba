//! Opening a store: manifest, delivered tables, derived state, person index,
//! and the SQL schemas built from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, LargeStringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::Column;
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, LogicalPlan, cast as cast_expr};
use datafusion::physical_plan::{ExecutionPlanProperties, SendableRecordBatchStream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::csv_import;
use crate::deliveries::{self, Built, Opened};
use crate::error::{CatalogError, Result};
use crate::files::{self, DeliveredTable, FileFormat};
use crate::key_set::KeySet;
use crate::layout::{self, PersonRanges};
use crate::linkage::{self, LinkRows, PersonIndex, index_dir, linkage_table, read_links};
use crate::manifest::Manifest;
use crate::object_storage::{FileUrls, LocalCopy, ObjectStorage, StoreObject};
use crate::source_codes::SourceCodes;
use crate::state;
use crate::tables::{self, TableDef};
use crate::views;

/// Options for opening a store.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Where derived state is kept; by default a folder under the user's state directory.
    pub state_dir: Option<PathBuf>,
    /// How many person ranges the layout is cut into when the state is
    /// derived (default: one per core of this machine). A cluster wants at
    /// least one per core of its workers; state already derived keeps its own.
    pub person_ranges: Option<usize>,
    /// Leave the person layout for later: when the state is derived (or
    /// grown by a delivery), the copies are not written and the tables read
    /// the delivered files, keys looked up per row, until
    /// [`Store::write_layout`] has written them and the store is opened
    /// again. Without it, open writes every copy still missing before it
    /// returns. Stores on object storage always write theirs.
    pub defer_layout: bool,
}

/// Schema of the vocabulary tables.
pub const VOCAB_SCHEMA: &str = "vocab";
/// Schema of the cross-source unions.
pub const LINKED_SCHEMA: &str = "linked";

/// A shown table and the plan that computes it.
#[derive(Debug, Clone)]
pub struct ShownTable {
    /// SQL schema.
    pub schema: String,
    /// SQL table name.
    pub name: String,
    /// True when rows are about persons (they carry `person_id`).
    pub person_level: bool,
    /// The plan behind the table.
    pub plan: LogicalPlan,
}

/// An opened store: checked, indexed, ready to register on any `SessionContext`.
#[derive(Debug)]
pub struct Store {
    /// The location given to [`Store::open`]: a folder or an object-storage URL.
    location: PathBuf,
    /// The store's objects, when it is on object storage.
    object_storage: Option<Arc<ObjectStorage>>,
    /// The local files plans read from object storage instead.
    urls: FileUrls,
    root: PathBuf,
    manifest: Manifest,
    state_dir: PathBuf,
    fingerprint: String,
    lineage: String,
    generation: u64,
    opened: Opened,
    tables: Vec<TableDef>,
    shown: Vec<ShownTable>,
    index: PersonIndex,
}

/// How [`Store::open_in`] works on the state folder.
enum Mode {
    /// Read the state as it is.
    Reuse,
    /// Derive everything, the layout cut into this many person ranges
    /// (default: one per core); `defer`: the copies are left pending.
    Derive { ranges: Option<usize>, defer: bool },
    /// Grow hard-linked earlier state by new files (absolute paths);
    /// `defer`: the copies of tables that grew are left pending.
    Extend { files: Vec<PathBuf>, defer: bool },
}

/// The tables and index of an opened state, or why earlier state cannot grow.
type Opening = std::result::Result<(Vec<TableDef>, PersonIndex), String>;

impl Store {
    /// Opens the store in `root`, deriving its state on first open, reusing
    /// it after, and growing it when the only change is new deliveries.
    ///
    /// `root` is a folder, or an `s3://bucket/prefix` URL of a store on
    /// object storage (see [`crate::object_storage`]).
    pub async fn open(root: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        if let Some(url) = crate::object_storage::store_url(root.as_ref()) {
            return Self::open_object_storage(url, options).await;
        }
        let root = root.as_ref().to_path_buf();
        Self::open_folder(&root, options, &FileUrls::default()).await
    }

    async fn open_folder(root: &Path, options: StoreOptions, urls: &FileUrls) -> Result<Store> {
        loop {
            // `None`: another process put the same state in place first; open theirs.
            let Some(store) = Self::try_open(root, options.clone(), urls).await? else {
                continue;
            };
            if options.defer_layout || store.pending_layout().is_empty() {
                return Ok(store);
            }
            // State left with its layout pending (by a server): written now.
            store.write_layout().await?;
            let options = StoreOptions {
                state_dir: Some(store.state_dir.clone()),
                ..options.clone()
            };
            if let Some(store) = Self::try_open(root, options, urls).await? {
                return Ok(store);
            }
        }
    }

    /// The person-level tables whose copy in the person layout is not
    /// written yet (see [`StoreOptions::defer_layout`]): they read the
    /// delivered files.
    pub fn pending_layout(&self) -> Vec<&TableDef> {
        self.tables
            .iter()
            .filter(|t| t.key.is_some() && self.index.source(&t.schema).is_some())
            .filter(|t| t.person_files.is_empty())
            .collect()
    }

    /// Writes the copies [`Store::pending_layout`] lists into this store's
    /// derived state, each in a work folder first and moved into place
    /// whole; the number written. This store keeps reading the delivered
    /// files: open the store again to read the copies.
    pub async fn write_layout(&self) -> Result<usize> {
        let derived = self.state_dir.join("derived").join(&self.fingerprint);
        let ranges = PersonRanges::load(&layout::layout_dir(&derived))?;
        let work_root = self.state_dir.join("layout-work");
        layout::remove_abandoned(&work_root);
        let mut written = 0;
        for t in self.pending_layout() {
            let Some(keys) = self.index.source(&t.schema) else {
                continue;
            };
            let dir = layout::copy_dir(&derived, t);
            if !layout::copy_files(&dir)?.is_empty() {
                continue; // written meanwhile by another process
            }
            let work = work_root.join(format!(
                "{}.{}.{}.{}",
                self.fingerprint,
                t.schema,
                t.name,
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&work);
            if let Err(e) = layout::write_copy(t, keys.clone(), &work, &ranges).await {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e);
            }
            let parent = dir.parent().unwrap_or(&derived);
            let placed = std::fs::create_dir_all(parent).and_then(|()| {
                // A folder left empty or partial by an earlier run is replaced.
                if dir.is_dir() && layout::copy_files(&dir).is_ok_and(|f| f.is_empty()) {
                    std::fs::remove_dir_all(&dir)?;
                }
                std::fs::rename(&work, &dir)
            });
            match placed {
                Ok(()) => written += 1,
                Err(_) if !layout::copy_files(&dir)?.is_empty() => {
                    let _ = std::fs::remove_dir_all(&work);
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&work);
                    return Err(CatalogError::state(&dir, e));
                }
            }
        }
        let _ = std::fs::remove_dir(&work_root);
        Ok(written)
    }

    /// Opens a store on object storage. When its derived state is beside
    /// it, the state is fetched and the store opened from an outline of its
    /// objects (`<state>/outline`, see [`crate::object_storage`]). Else the
    /// objects are copied whole (`<state>/objects`), the state derived (or
    /// grown from the latest earlier state) and written beside the store.
    async fn open_object_storage(url: &str, options: StoreOptions) -> Result<Store> {
        let remote = Arc::new(ObjectStorage::from_env(url)?);
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| state::default_state_dir(Path::new(remote.url().as_str())));
        let objects = remote.objects().await?;
        let entries: Vec<String> = objects.iter().map(|o| o.entry()).collect();
        let fingerprint = state::fingerprint_of(&entries);
        let outline_root = state_dir.join("outline");
        let outline_derived = outline_root.join("derived");
        // State fetched before is used while the same state is beside the
        // store (one derived again there numbers persons anew).
        let fetched_before = outline_derived.join(&fingerprint);
        let fetched = match remote.state_record(&fingerprint).await? {
            None => false,
            Some(record)
                if std::fs::read(fetched_before.join("complete.json"))
                    .ok()
                    .as_ref()
                    == Some(&record) =>
            {
                true
            }
            Some(_) => {
                if fetched_before.exists() {
                    std::fs::remove_dir_all(&fetched_before)
                        .map_err(|e| CatalogError::state(&fetched_before, e))?;
                }
                remote
                    .fetch_state(&outline_derived, &fingerprint, LocalCopy::Footer)
                    .await?
            }
        };
        let mut store = if fetched {
            Self::open_outline(&remote, &objects, &outline_root, state_dir).await?
        } else {
            Self::derive_object_storage(&remote, &objects, &outline_derived, options, state_dir)
                .await?
        };
        store.location = PathBuf::from(url);
        store.object_storage = Some(remote);
        Ok(store)
    }

    /// Opens the store from an outline in `outline_root` of its `objects`,
    /// with the state fetched into `outline_root/derived`: the manifest and
    /// the vocabulary whole, the other Parquet files as their footers, the
    /// other CSV files as their size (the state holds them as Parquet).
    /// Nothing is derived from an outline.
    async fn open_outline(
        remote: &ObjectStorage,
        objects: &[StoreObject],
        outline_root: &Path,
        state_dir: PathBuf,
    ) -> Result<Store> {
        let root = outline_root.join("objects");
        let derived_root = outline_root.join("derived");
        let manifest_only: Vec<StoreObject> = objects
            .iter()
            .filter(|o| o.rel == "rwd.toml")
            .cloned()
            .collect();
        let record = outline_root.join("copies.tsv");
        remote
            .mirror(&root, &record, &manifest_only, |_| LocalCopy::Whole)
            .await?;
        let text = std::fs::read_to_string(root.join("rwd.toml")).unwrap_or_default();
        let vocabulary = Manifest::vocabulary_in(&text);
        remote
            .mirror(&root, &record, objects, |rel| {
                let path = Path::new(rel);
                let is = |ext: &str| path.extension().is_some_and(|e| e == ext);
                if vocabulary.as_ref().is_some_and(|v| path.starts_with(v)) {
                    LocalCopy::Whole
                } else if is("parquet") {
                    LocalCopy::Footer
                } else if is("csv") {
                    LocalCopy::Empty
                } else {
                    LocalCopy::Whole
                }
            })
            .await?;
        ObjectStorage::remove_others(&root, &record, objects)?;
        let manifest = Manifest::load(&root)?;
        let fingerprint = state::fingerprint(&root)?;
        let derived = derived_root.join(&fingerprint);
        if !derived.join("complete.json").is_file() {
            return Err(CatalogError::state(
                &derived,
                std::io::Error::other(
                    "the outline of the store does not match the state fetched for it \
                     (its files changed while it was opened, or this file system keeps \
                     no exact modification times): open it again",
                ),
            ));
        }
        // Of earlier states only the latest stays, for work still running on it.
        let earlier = std::fs::read_dir(&derived_root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy() != fingerprint.as_str())
            .filter_map(|e| {
                let completed = std::fs::metadata(e.path().join("complete.json"))
                    .and_then(|m| m.modified())
                    .ok()?;
                Some((completed, e.file_name().to_string_lossy().into_owned()))
            })
            .max()
            .map(|(_, name)| name);
        remove_stale(&derived_root, &[Some(fingerprint.clone()), earlier]);
        let urls = remote.file_urls(&root, &derived_root);
        let store = Self::reuse(root, manifest, state_dir, &derived, fingerprint, &urls).await?;
        if let Some(t) = store.pending_layout().first() {
            return Err(CatalogError::state(
                &derived,
                std::io::Error::other(format!(
                    "the state on object storage lacks the person layout of {}.{}",
                    t.schema, t.name
                )),
            ));
        }
        Ok(store)
    }

    /// Opens the store from a whole copy of its `objects` in
    /// `<state>/objects`, deriving its state, and writes the state beside
    /// the store. The latest state fetched into `outline_derived` is
    /// fetched whole first, so that new deliveries grow it and persons keep
    /// their numbers.
    async fn derive_object_storage(
        remote: &ObjectStorage,
        objects: &[StoreObject],
        outline_derived: &Path,
        options: StoreOptions,
        state_dir: PathBuf,
    ) -> Result<Store> {
        let mirror = state_dir.join("objects");
        let record = state_dir.join("copies.tsv");
        remote
            .mirror(&mirror, &record, objects, |_| LocalCopy::Whole)
            .await?;
        ObjectStorage::remove_others(&mirror, &record, objects)?;
        let derived_root = state_dir.join("derived");
        std::fs::create_dir_all(&derived_root)
            .map_err(|e| CatalogError::state(&derived_root, e))?;
        if deliveries::previous(&derived_root).is_none()
            && let Some((_, earlier)) = deliveries::previous(outline_derived)
        {
            remote
                .fetch_state(&derived_root, &earlier.fingerprint, LocalCopy::Whole)
                .await?;
        }
        let urls = remote.file_urls(&mirror, &derived_root);
        // The state is published with its layout.
        let options = StoreOptions {
            state_dir: Some(state_dir),
            defer_layout: false,
            ..options
        };
        let mut store = Self::open_folder(&mirror, options.clone(), &urls).await?;
        let derived = derived_root.join(&store.fingerprint);
        if let Some(theirs) = remote.publish_state(&derived, &store.fingerprint).await? {
            // Another machine published this state first: every machine
            // must number persons as it did.
            if (theirs.lineage.as_str(), theirs.generation) != (store.lineage(), store.generation())
            {
                let _ = std::fs::remove_dir_all(&derived);
                remote
                    .fetch_state(&derived_root, &store.fingerprint, LocalCopy::Whole)
                    .await?;
                store = Self::open_folder(&mirror, options, &urls).await?;
            }
        }
        Ok(store)
    }

    async fn try_open(
        root: &Path,
        options: StoreOptions,
        urls: &FileUrls,
    ) -> Result<Option<Store>> {
        let root = root.to_path_buf();
        if !root.is_dir() {
            return Err(CatalogError::manifest(
                root.join("rwd.toml"),
                "the store folder does not exist",
            ));
        }
        let manifest = Manifest::load(&root)?;
        let state_dir = options
            .state_dir
            .unwrap_or_else(|| state::default_state_dir(&root));
        let entries = state::entries(&root)?;
        let fingerprint = state::fingerprint_of(&entries);
        let derived_root = state_dir.join("derived");
        let derived = derived_root.join(&fingerprint);
        if derived.join("complete.json").is_file() {
            return Self::reuse(root, manifest, state_dir, &derived, fingerprint, urls)
                .await
                .map(Some);
        }
        std::fs::create_dir_all(&derived_root)
            .map_err(|e| CatalogError::state(&derived_root, e))?;
        let mut reason = None;
        let previous = deliveries::previous(&derived_root);
        // Kept beside the new state, for work still running on it.
        let retired = previous.as_ref().map(|(dir, _)| dir.clone());
        if let Some((old_dir, old)) = previous {
            match deliveries::added(&manifest, &old, &entries) {
                Ok(files) => {
                    let work = state::temp_sibling(&derived);
                    let generation = old.generation + 1;
                    let absolute = files.iter().map(|f| root.join(f)).collect();
                    let opened = match deliveries::link_tree(&old_dir, &work) {
                        Ok(()) => {
                            let mode = Mode::Extend {
                                files: absolute,
                                defer: options.defer_layout,
                            };
                            Self::open_in(&root, &manifest, &work, mode).await
                        }
                        Err(e) => Err(e),
                    };
                    match opened {
                        Ok(Ok((tables, index))) => {
                            // Checked before the state is kept.
                            let codes = match SourceCodes::load(&root, &manifest, &tables).await {
                                Ok(c) => c,
                                Err(e) => {
                                    let _ = std::fs::remove_dir_all(&work);
                                    return Err(e);
                                }
                            };
                            let old_persons =
                                PersonIndex::load(&index_dir(&old_dir), &source_names(&manifest))
                                    .map(|i| i.persons())
                                    .unwrap_or(0);
                            let lineage = if old.lineage.is_empty() {
                                old.fingerprint.clone()
                            } else {
                                old.lineage.clone()
                            };
                            let built = Built {
                                store: root.to_string_lossy().into_owned(),
                                fingerprint: fingerprint.clone(),
                                lineage: lineage.clone(),
                                generation,
                                files: entries,
                                format: state::FORMAT.into(),
                            };
                            let Some(tables) = commit(
                                &work,
                                &derived,
                                &derived_root,
                                &built,
                                retired.as_deref(),
                                tables,
                            )?
                            else {
                                return Ok(None);
                            };
                            let new_persons = index.persons().saturating_sub(old_persons);
                            let shown = build_shown(&tables, &index, &codes, urls)?;
                            return Ok(Some(Store {
                                location: root.clone(),
                                object_storage: None,
                                urls: urls.clone(),
                                root,
                                manifest,
                                state_dir,
                                fingerprint,
                                lineage,
                                generation,
                                opened: Opened::Extended { files, new_persons },
                                tables,
                                shown,
                                index,
                            }));
                        }
                        Ok(Err(why)) => {
                            let _ = std::fs::remove_dir_all(&work);
                            reason = Some(why);
                        }
                        Err(e) => {
                            let _ = std::fs::remove_dir_all(&work);
                            reason = Some(format!("the delivery could not be taken in ({e})"));
                        }
                    }
                }
                Err(why) => reason = Some(why),
            }
        }
        let work = state::temp_sibling(&derived);
        let (tables, index) = match Self::open_in(
            &root,
            &manifest,
            &work,
            Mode::Derive {
                ranges: options.person_ranges,
                defer: options.defer_layout,
            },
        )
        .await
        {
            Ok(Ok(x)) => x,
            Ok(Err(why)) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(CatalogError::state(&work, std::io::Error::other(why)));
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e);
            }
        };
        // Checked before the state is kept.
        let started = std::time::Instant::now();
        let codes = match SourceCodes::load(&root, &manifest, &tables).await {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e);
            }
        };
        log::info!("source codes read in {:.1?}", started.elapsed());
        let lineage = deliveries::new_lineage(&fingerprint);
        let built = Built {
            store: root.to_string_lossy().into_owned(),
            fingerprint: fingerprint.clone(),
            lineage: lineage.clone(),
            generation: 0,
            files: entries,
            format: state::FORMAT.into(),
        };
        let Some(tables) = commit(
            &work,
            &derived,
            &derived_root,
            &built,
            retired.as_deref(),
            tables,
        )?
        else {
            return Ok(None);
        };
        let shown = build_shown(&tables, &index, &codes, urls)?;
        Ok(Some(Store {
            location: root.clone(),
            object_storage: None,
            urls: urls.clone(),
            root,
            manifest,
            state_dir,
            lineage,
            fingerprint,
            generation: 0,
            opened: Opened::Derived { reason },
            tables,
            shown,
            index,
        }))
    }

    /// The store in `root` with the complete state in `derived`, whose
    /// fingerprint is `fingerprint`.
    async fn reuse(
        root: PathBuf,
        manifest: Manifest,
        state_dir: PathBuf,
        derived: &Path,
        fingerprint: String,
        urls: &FileUrls,
    ) -> Result<Store> {
        let built = Built::read(derived);
        let (tables, index) = Self::open_in(&root, &manifest, derived, Mode::Reuse)
            .await?
            .map_err(|why| CatalogError::state(derived, std::io::Error::other(why)))?;
        // State of earlier versions has no lineage: numbered from scratch.
        let (lineage, generation) = match built {
            Some(b) if !b.lineage.is_empty() => (b.lineage, b.generation),
            _ => (fingerprint.clone(), 0),
        };
        let codes = SourceCodes::load(&root, &manifest, &tables).await?;
        let shown = build_shown(&tables, &index, &codes, urls)?;
        Ok(Store {
            location: root.clone(),
            object_storage: None,
            urls: urls.clone(),
            root,
            manifest,
            state_dir,
            fingerprint,
            lineage,
            generation,
            opened: Opened::Reused,
            tables,
            shown,
            index,
        })
    }

    async fn open_in(root: &Path, manifest: &Manifest, work: &Path, mode: Mode) -> Result<Opening> {
        let reuse = !matches!(mode, Mode::Derive { .. });
        let mut tables = Vec::new();
        for source in &manifest.sources {
            for delivered in files::discover(&root.join(&source.path), &source.path)? {
                tables.push(load_table(
                    root,
                    &source.name,
                    delivered,
                    Some(&source.person_key),
                    work,
                    reuse,
                )?);
            }
        }
        if let Some(vocab) = &manifest.vocabulary {
            for delivered in files::discover(&root.join(vocab), vocab)? {
                tables.push(load_table(
                    root,
                    VOCAB_SCHEMA,
                    delivered,
                    None,
                    work,
                    reuse,
                )?);
            }
        }
        let sources = source_names(manifest);
        let index = match &mode {
            Mode::Reuse => PersonIndex::load(&index_dir(work), &sources)?,
            Mode::Derive { .. } => {
                let started = std::time::Instant::now();
                // The linkage is read while the sources' keys are: its
                // reads overlap their work.
                let links = manifest.linkage.clone().map(|rel| {
                    let (root, work) = (root.to_path_buf(), work.to_path_buf());
                    std::thread::spawn(move || -> Result<(LinkRows, bool)> {
                        let link = linkage_table(&root, &rel, &work, false)?;
                        Ok((LinkRows::read(&link, &rel)?, link.csv))
                    })
                });
                let mut keys = Vec::new();
                let mut failed = None;
                for s in &sources {
                    let t = std::time::Instant::now();
                    match distinct_keys(&tables, s).await {
                        Ok(found) => keys.push((s.clone(), found)),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                    log::debug!("distinct keys of {s} read in {:.1?}", t.elapsed());
                }
                // The reader writes into the work folder: it is done before
                // an error leaves the folder to be removed.
                let links = links.map(|reading| reading.join());
                if let Some(e) = failed {
                    return Err(e);
                }
                log::info!("distinct person keys read in {:.1?}", started.elapsed());
                let index = match (&manifest.linkage, links) {
                    (Some(rel), Some(read)) => {
                        let (links, csv) = read.map_err(|_| {
                            CatalogError::malformed(
                                rel,
                                None,
                                None,
                                "the linkage table could not be read",
                            )
                        })??;
                        log::debug!("linkage read at {:.1?}", started.elapsed());
                        links.use_rows(|rows| PersonIndex::build(keys, rows, rel, csv))?
                    }
                    _ => PersonIndex::build(keys, std::iter::empty(), Path::new("-"), false)?,
                };
                log::debug!("persons numbered at {:.1?}", started.elapsed());
                index.save(&index_dir(work))?;
                log::info!("person index built in {:.1?}", started.elapsed());
                index
            }
            Mode::Extend { files, .. } => {
                let old = PersonIndex::load(&index_dir(work), &sources)?;
                let mut keys = Vec::new();
                for s in &sources {
                    let delivered: Vec<TableDef> = tables
                        .iter()
                        .filter(|t| t.schema == *s)
                        .filter_map(|t| only_files(t, files))
                        .collect();
                    let found = distinct_keys(&delivered, s).await?;
                    keys.push((s.clone(), unknown_keys(&old, s, &found)));
                }
                let grown = match &manifest.linkage {
                    Some(rel) => {
                        let link = linkage_table(root, rel, work, true)?;
                        read_links(&link, rel, |rows| old.extend(keys, rows, rel, link.csv))?
                    }
                    None => old.extend(keys, std::iter::empty(), Path::new("-"), false)?,
                };
                let index = match grown {
                    Ok(index) => index,
                    Err(why) => return Ok(Err(why)),
                };
                index.save(&index_dir(work))?;
                index
            }
        };
        let ranges = match &mode {
            Mode::Derive { ranges, .. } => {
                let ranges = PersonRanges::for_persons(index.persons(), *ranges);
                ranges.save(&layout::layout_dir(work))?;
                ranges
            }
            Mode::Reuse | Mode::Extend { .. } => PersonRanges::load(&layout::layout_dir(work))?,
        };
        for t in tables.iter_mut() {
            let Some(keys) = t.key.as_ref().and_then(|_| index.source(&t.schema)) else {
                continue;
            };
            let dir = layout::copy_dir(work, t);
            t.person_files = match &mode {
                Mode::Reuse => layout::copy_files(&dir)?,
                Mode::Derive { defer: true, .. } => Vec::new(),
                Mode::Derive { defer: false, .. } => {
                    layout::write_copy(t, keys.clone(), &dir, &ranges).await?
                }
                Mode::Extend { files, defer } => {
                    if only_files(t, files).is_none() {
                        layout::copy_files(&dir)?
                    } else {
                        let written = !layout::copy_files(&dir)?.is_empty();
                        if written && !layout::same_columns(t, &dir)? {
                            return Ok(Err(format!(
                                "the new files of {}.{} change its columns",
                                t.schema, t.name
                            )));
                        }
                        // Every range may gain rows: the table's copy is
                        // written again (the old one stays in the old state).
                        if dir.exists() {
                            std::fs::remove_dir_all(&dir)
                                .map_err(|e| CatalogError::state(&dir, e))?;
                        }
                        if *defer {
                            Vec::new()
                        } else {
                            layout::write_copy(t, keys.clone(), &dir, &ranges).await?
                        }
                    }
                }
            };
            t.person_ranges = Some(ranges);
        }
        Ok(Ok((tables, index)))
    }

    /// How the state was obtained when the store was opened.
    pub fn opened(&self) -> &Opened {
        &self.opened
    }

    /// The state the person numbers belong to: they stay the same across
    /// deliveries taken in since it was derived from scratch.
    pub fn lineage(&self) -> &str {
        &self.lineage
    }

    /// Deliveries taken in since the state was derived from scratch.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Where the store was opened from: its folder, or its object-storage
    /// URL. Opening this location again opens the same store.
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// The client plans need to read the store's files, and the URL to
    /// register it under, when the store is on object storage.
    pub fn object_store_client(&self) -> Option<(url::Url, Arc<dyn object_store::ObjectStore>)> {
        self.object_storage.as_ref().map(|o| o.client())
    }

    /// The name plans give `file`, a file of the store or its state: its
    /// object's URL when the store is on object storage, where the local
    /// copy may hold only the file's footer.
    pub fn read_from(&self, file: &Path) -> PathBuf {
        self.urls.of(file)
    }

    /// The store folder (for a store on object storage, its local copy or outline).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's name from its manifest.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The state folder of this store.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// A fingerprint of the store's files: it changes whenever they change.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The delivered tables, checked.
    pub fn tables(&self) -> &[TableDef] {
        &self.tables
    }

    /// Every table shown in SQL, `linked` unions included.
    pub fn shown_tables(&self) -> &[ShownTable] {
        &self.shown
    }

    /// The person linkage index.
    pub fn persons(&self) -> &PersonIndex {
        &self.index
    }

    /// Registers the store's schemas in catalog `catalog` of a session.
    pub fn register(&self, ctx: &SessionContext, catalog: &str) -> Result<()> {
        let provider = MemoryCatalogProvider::new();
        let mut schemas: Vec<&str> = self
            .manifest
            .sources
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        schemas.extend([VOCAB_SCHEMA, LINKED_SCHEMA, "public"]);
        for name in schemas {
            let schema = MemorySchemaProvider::new();
            for t in self.shown.iter().filter(|t| t.schema == name) {
                let view = ViewTable::new(t.plan.clone(), None);
                schema.register_table(t.name.clone(), Arc::new(view))?;
            }
            provider.register_schema(name, Arc::new(schema))?;
        }
        ctx.register_catalog(catalog, Arc::new(provider));
        Ok(())
    }
}

fn source_names(manifest: &Manifest) -> Vec<String> {
    manifest.sources.iter().map(|s| s.name.clone()).collect()
}

/// The table restricted to those of its files that are in `files`, if any.
fn only_files(t: &TableDef, files: &[PathBuf]) -> Option<TableDef> {
    t.key.as_ref()?;
    let new: Vec<PathBuf> = t
        .files
        .iter()
        .filter(|f| files.contains(f))
        .cloned()
        .collect();
    (!new.is_empty()).then(|| {
        let mut d = t.clone();
        d.files = new;
        d
    })
}

/// The keys of `found` (sorted) that the index does not know yet, sorted.
fn unknown_keys(index: &PersonIndex, source: &str, found: &LargeStringArray) -> LargeStringArray {
    let known = index.source(source);
    (0..found.len())
        .map(|i| found.value(i))
        .filter(|k| known.is_none_or(|s| s.position_of(k).is_none()))
        .map(Some)
        .collect()
}

/// Writes `complete.json` into the work folder, moves it into place, removes
/// earlier state but the `retired` one (work may still run on it), and
/// points the tables' converted files at the final folder. `None` when
/// another process put the same state in place first (open theirs).
fn commit(
    work: &Path,
    derived: &Path,
    derived_root: &Path,
    built: &Built,
    retired: Option<&Path>,
    tables: Vec<TableDef>,
) -> Result<Option<Vec<TableDef>>> {
    let text = serde_json::to_string(built)
        .map_err(|e| CatalogError::state(work, std::io::Error::other(e.to_string())))?;
    std::fs::write(work.join("complete.json"), text).map_err(|e| CatalogError::state(work, e))?;
    match std::fs::rename(work, derived) {
        Ok(()) => {}
        Err(_) if derived.join("complete.json").is_file() => {
            let _ = std::fs::remove_dir_all(work);
            return Ok(None);
        }
        Err(e) => return Err(CatalogError::state(derived, e)),
    }
    let _ = state::sync_dir(derived_root);
    let retired = retired
        .and_then(|r| r.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    remove_stale(derived_root, &[Some(built.fingerprint.clone()), retired]);
    let moved = |files: Vec<PathBuf>| -> Vec<PathBuf> {
        files
            .into_iter()
            .map(|f| match f.strip_prefix(work) {
                Ok(rel) => derived.join(rel),
                Err(_) => f,
            })
            .collect()
    };
    Ok(Some(
        tables
            .into_iter()
            .map(|mut t| {
                t.files = moved(t.files);
                t.person_files = moved(t.person_files);
                t
            })
            .collect(),
    ))
}

/// Checks one delivered table and, for CSV, converts it into the work folder.
fn load_table(
    root: &Path,
    schema: &str,
    delivered: DeliveredTable,
    key: Option<&str>,
    work: &Path,
    reuse: bool,
) -> Result<TableDef> {
    let shown = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
    let first = shown(&delivered.files[0]);
    let (files, file_schema, rows) = match delivered.format {
        FileFormat::Parquet => {
            let mut schemas = Vec::new();
            let mut rows = 0;
            for f in &delivered.files {
                let (s, n) = files::parquet_schema(f, &shown(f))?;
                rows += n;
                schemas.push((shown(f), s));
            }
            let merged = tables::merge_schemas(&schemas)?;
            (delivered.files.clone(), merged, rows)
        }
        FileFormat::Csv => {
            let out = work
                .join("tables")
                .join(schema)
                .join(format!("{}.parquet", delivered.name));
            if !reuse {
                std::fs::create_dir_all(out.parent().expect("has parent"))
                    .map_err(|e| CatalogError::state(&out, e))?;
                let cdm = crate::cdm::table(&delivered.name);
                let type_for = |c: &str| -> Option<DataType> {
                    if Some(c) == key {
                        return Some(DataType::Utf8);
                    }
                    cdm.and_then(|t| t.column(c)).map(|t| t.arrow())
                };
                csv_import::convert(&delivered.files, &shown, &type_for, &out)?;
            }
            let (s, n) = files::parquet_schema(&out, &out)?;
            (vec![out], s, n)
        }
    };
    let (columns, key) = tables::shape(&delivered.name, &file_schema, key, &first)?;
    Ok(TableDef {
        schema: schema.to_owned(),
        name: delivered.name,
        files,
        file_schema,
        key,
        columns,
        rows,
        person_files: Vec::new(),
        person_ranges: None,
    })
}

/// The sorted distinct person keys of one source, as text.
///
/// Each of the machine's cores keeps one set for all the source's tables
/// (a person's key is looked up, not inserted again, in the next table);
/// the sets are merged once at the end.
async fn distinct_keys(tables: &[TableDef], source: &str) -> Result<LargeStringArray> {
    let ctx = SessionContext::new();
    let lanes = layout::cores();
    let mut sets: Vec<KeySet> = (0..lanes).map(|_| KeySet::new()).collect();
    for t in tables.iter().filter(|t| t.schema == source) {
        let Some(key) = &t.key else { continue };
        let key_col = Expr::Column(Column::new_unqualified(key));
        let plan = ctx
            .read_table(t.file_provider()?)?
            .select(vec![cast_expr(key_col, DataType::Utf8).alias("k")])?
            .create_physical_plan()
            .await?;
        let mut streams: Vec<Vec<SendableRecordBatchStream>> =
            (0..lanes).map(|_| Vec::new()).collect();
        for p in 0..plan.output_partitioning().partition_count() {
            streams[p % lanes].push(plan.execute(p, ctx.task_ctx())?);
        }
        let mut tasks = Vec::new();
        for (set, streams) in sets.drain(..).zip(streams) {
            tasks.push(SpawnedTask::spawn(distinct_into(set, streams)));
        }
        for task in tasks {
            sets.push(
                task.join_unwind()
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))??,
            );
        }
    }
    let merged = std::time::Instant::now();
    let mut sets = sets.into_iter();
    let mut keys = sets.next().expect("one set per core");
    for other in sets {
        keys.merge(other);
    }
    let sorted = linkage::sorted_keys(&keys.into_keys()?)?;
    log::debug!(
        "keys of {source} merged and sorted in {:.1?}",
        merged.elapsed()
    );
    Ok(sorted)
}

/// Adds the distinct non-null keys of `streams`, one after the other, to `set`.
async fn distinct_into(mut set: KeySet, streams: Vec<SendableRecordBatchStream>) -> Result<KeySet> {
    for stream in streams {
        distinct_of(stream, &mut set).await?;
    }
    Ok(set)
}

/// Adds the distinct non-null keys of one stream of a key column to `set`.
/// Deliveries are usually grouped by person: only the first row of each
/// run of equal keys is added.
async fn distinct_of(mut stream: SendableRecordBatchStream, set: &mut KeySet) -> Result<()> {
    let mut last: Option<String> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let column = batch.column(0).as_string::<i32>();
        let mut previous = last.as_deref();
        for i in 0..column.len() {
            if column.is_null(i) {
                previous = None;
                continue;
            }
            let key = column.value(i);
            if previous != Some(key) {
                set.add(key.as_bytes());
            }
            previous = Some(key);
        }
        last = previous.map(str::to_owned);
    }
    Ok(())
}

/// Builds the plans of every shown table, and the `linked` unions.
///
/// `urls`: the files plans read from object storage instead of locally.
fn build_shown(
    tables: &[TableDef],
    index: &PersonIndex,
    codes: &SourceCodes,
    urls: &FileUrls,
) -> Result<Vec<ShownTable>> {
    let read_from = |t: &TableDef| {
        let mut t = t.clone();
        t.files = t.files.iter().map(|f| urls.of(f)).collect();
        t.person_files = t.person_files.iter().map(|f| urls.of(f)).collect();
        t
    };
    let remote: Vec<TableDef>;
    let tables = if urls.is_empty() {
        tables
    } else {
        remote = tables.iter().map(read_from).collect();
        &remote
    };
    let mut shown = Vec::new();
    for t in tables {
        shown.push(ShownTable {
            schema: t.schema.clone(),
            name: t.name.clone(),
            person_level: t.is_person_level(),
            plan: views::table_plan(
                t,
                index,
                codes.table(&t.schema, &t.name).map(|c| c.as_ref()),
            )?,
        });
    }
    let mut names: Vec<&str> = tables
        .iter()
        .filter(|t| t.schema != VOCAB_SCHEMA)
        .map(|t| t.name.as_str())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let parts: Vec<(&TableDef, &LogicalPlan)> = tables
            .iter()
            .zip(&shown)
            .filter(|(t, _)| t.schema != VOCAB_SCHEMA && t.name == name)
            .map(|(t, s)| (t, &s.plan))
            .collect();
        if parts.len() < 2 {
            continue;
        }
        shown.push(ShownTable {
            schema: LINKED_SCHEMA.into(),
            name: name.into(),
            person_level: parts.iter().any(|(t, _)| t.is_person_level()),
            plan: views::linked_plan(&parts)?,
        });
    }
    Ok(shown)
}

/// Removes derived state of earlier versions of the store but those in
/// `keep`, and temporary folders of builds that died more than an hour ago.
fn remove_stale(derived_root: &Path, keep: &[Option<String>]) {
    let Ok(entries) = std::fs::read_dir(derived_root) else {
        return;
    };
    let hour = std::time::Duration::from_secs(3600);
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let abandoned = name.starts_with('.')
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > hour));
        let kept = keep.iter().flatten().any(|k| *k == name);
        if (!kept && !name.starts_with('.')) || abandoned {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
