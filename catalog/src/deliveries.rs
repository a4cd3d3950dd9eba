//! Deliveries: files added to a store after its state was derived.
//!
//! A store whose only change is new Parquet files in tables delivered as
//! folders (a month of claims) or in a linkage folder is taken in without
//! deriving everything again: the person index grows (existing numbers never
//! change), and only the new files are copied into the person layout. Any
//! other change (a file changed or removed, the manifest, a CSV table)
//! derives the state again from scratch, and says why.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sha2::Digest;

use crate::error::{CatalogError, Result};
use crate::manifest::Manifest;
use crate::state;

/// What a derived state folder was built from (`complete.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    pub store: String,
    pub fingerprint: String,
    /// The fingerprint of the state this one grew from by deliveries (its own
    /// when derived from scratch): person numbers are shared within a lineage.
    #[serde(default)]
    pub lineage: String,
    /// Deliveries taken in since the state was derived from scratch.
    #[serde(default)]
    pub generation: u64,
    /// The store's files (`path\tsize\tmtime`) when the state was derived.
    #[serde(default)]
    pub files: Vec<String>,
    /// The layout of derived state it was written in ([`state::FORMAT`]).
    #[serde(default)]
    pub format: String,
}

/// A new lineage: the fingerprint of the state derived from scratch and a
/// random part, so that the same files numbered through other deliveries
/// are never taken for it.
pub fn new_lineage(fingerprint: &str) -> String {
    let mut salt = [0u8; 8];
    getrandom_fill(&mut salt);
    format!("{fingerprint}-{}", hex::encode(salt))
}

fn getrandom_fill(buf: &mut [u8]) {
    // Time and process are enough to tell derivations apart; no secret here.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let digest = sha2::Sha256::digest(format!("{nanos}-{}-{n}", std::process::id()).as_bytes());
    for (b, d) in buf.iter_mut().zip(digest.iter()) {
        *b = *d;
    }
}

impl Built {
    /// Reads `complete.json` of a derived folder.
    pub fn read(dir: &Path) -> Option<Built> {
        let bytes = std::fs::read(dir.join("complete.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// How a store's state was obtained when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The derived state was reused as it was.
    Reused,
    /// Derived from scratch: the first open, or `reason` why earlier state could not grow.
    Derived { reason: Option<String> },
    /// Earlier state grew by the new files (relative to the store).
    Extended {
        files: Vec<PathBuf>,
        new_persons: u64,
    },
}

/// The most recently completed derived state under `derived_root` that
/// lists its files and is in the current layout.
pub fn previous(derived_root: &Path) -> Option<(PathBuf, Built)> {
    let entries = std::fs::read_dir(derived_root).ok()?;
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let built = Built::read(&e.path())?;
            let completed = std::fs::metadata(e.path().join("complete.json"))
                .and_then(|m| m.modified())
                .ok()?;
            (!built.files.is_empty() && built.format == state::FORMAT).then_some((
                completed,
                e.path(),
                built,
            ))
        })
        .max_by_key(|(completed, _, _)| *completed)
        .map(|(_, path, built)| (path, built))
}

/// True for files the store's tables never read (hidden or `_`-prefixed
/// names anywhere in the path: partial copies, `_SUCCESS` markers).
fn ignored(path: &str) -> bool {
    Path::new(path).components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        c.starts_with('.') || c.starts_with('_')
    })
}

fn path_of(entry: &str) -> &str {
    entry.split('\t').next().unwrap_or(entry)
}

/// The files added since `old` when they are all new deliveries, else why not.
pub fn added(
    manifest: &Manifest,
    old: &Built,
    now: &[String],
) -> std::result::Result<Vec<PathBuf>, String> {
    let before: BTreeSet<&str> = old
        .files
        .iter()
        .map(String::as_str)
        .filter(|e| !ignored(path_of(e)))
        .collect();
    let current: BTreeSet<&str> = now
        .iter()
        .map(String::as_str)
        .filter(|e| !ignored(path_of(e)))
        .collect();
    if let Some(gone) = before.difference(&current).next() {
        let path = path_of(gone);
        let still = current.iter().any(|e| path_of(e) == path);
        return Err(format!(
            "{path} was {} since the state was derived",
            if still { "changed" } else { "removed" }
        ));
    }
    let old_paths: Vec<&str> = before.iter().map(|e| path_of(e)).collect();
    // Folders whose Parquet files are deliveries of one table (or of the linkage).
    let folder_of = |path: &str| -> Option<String> {
        let p = Path::new(path);
        if p.extension().is_none_or(|x| x != "parquet") {
            return None;
        }
        let mut folders: Vec<PathBuf> = manifest
            .sources
            .iter()
            .filter_map(|s| {
                let rest = p.strip_prefix(&s.path).ok()?;
                let table = rest.components().next()?;
                (rest.components().count() > 1).then(|| s.path.join(table))
            })
            .collect();
        if let Some(link) = &manifest.linkage
            && p.parent() == Some(link.as_path())
        {
            folders.push(link.clone());
        }
        folders.pop().map(|f| f.to_string_lossy().into_owned())
    };
    let mut added = Vec::new();
    for entry in current.difference(&before) {
        let path = path_of(entry);
        let Some(folder) = folder_of(path) else {
            return Err(format!(
                "{path} is not a new Parquet file of a table (or linkage) delivered as a folder"
            ));
        };
        let prefix = format!("{folder}/");
        if !old_paths
            .iter()
            .any(|p| p.starts_with(&prefix) && p.ends_with(".parquet"))
        {
            return Err(format!("{path} starts a new table"));
        }
        added.push(PathBuf::from(path));
    }
    Ok(added)
}

/// Makes `to` hold the files of `from` (hard links where the file system
/// allows, copies otherwise), except `complete.json`.
pub fn link_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| CatalogError::state(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| CatalogError::state(from, e))? {
        let entry = entry.map_err(|e| CatalogError::state(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_name() == "complete.json" {
            continue;
        }
        if entry
            .file_type()
            .map_err(|e| CatalogError::state(&src, e))?
            .is_dir()
        {
            link_tree(&src, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(|e| CatalogError::state(&dst, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let dir = tempfile::tempdir().unwrap();
        for folder in ["ndb", "linkage"] {
            std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        }
        let text = "[store]\nname = \"s\"\n[[source]]\nname = \"ndb\"\npath = \"ndb\"\n\
                    [linkage]\npath = \"linkage\"\n";
        Manifest::parse(text, dir.path(), &dir.path().join("rwd.toml")).expect("manifest")
    }

    #[test]
    fn only_new_parquet_files_of_folder_tables_are_deliveries() {
        let m = manifest();
        let old = Built {
            store: String::new(),
            fingerprint: String::new(),
            lineage: String::new(),
            generation: 0,
            format: state::FORMAT.into(),
            files: vec![
                "linkage/a.parquet\t1\t1".into(),
                "ndb/claims/2020.parquet\t1\t1".into(),
                "ndb/person.parquet\t1\t1".into(),
                "rwd.toml\t1\t1".into(),
            ],
        };
        let mut now = old.files.clone();
        now.push("ndb/claims/2021.parquet\t1\t2".into());
        now.push("linkage/b.parquet\t1\t2".into());
        now.sort();
        assert_eq!(
            added(&m, &old, &now).unwrap(),
            [
                PathBuf::from("linkage/b.parquet"),
                PathBuf::from("ndb/claims/2021.parquet")
            ]
        );
        let mut changed = now.clone();
        changed.retain(|e| !e.starts_with("rwd.toml"));
        changed.push("rwd.toml\t2\t3".into());
        assert!(
            added(&m, &old, &changed)
                .unwrap_err()
                .contains("rwd.toml was changed")
        );
        let mut removed = now.clone();
        removed.retain(|e| !e.starts_with("ndb/person.parquet"));
        assert!(
            added(&m, &old, &removed)
                .unwrap_err()
                .contains("ndb/person.parquet was removed")
        );
        let mut new_table = now.clone();
        new_table.push("ndb/death/2021.parquet\t1\t2".into());
        assert!(
            added(&m, &old, &new_table)
                .unwrap_err()
                .contains("starts a new table")
        );
        let mut csv = now.clone();
        csv.push("ndb/claims/2022.csv\t1\t2".into());
        assert!(
            added(&m, &old, &csv)
                .unwrap_err()
                .contains("not a new Parquet file")
        );
    }
}
