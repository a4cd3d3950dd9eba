//! The state folder: everything the engine derives from a store lives here,
//! never in the store itself.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::error::{CatalogError, Result};

/// Bumped whenever the layout of derived state changes.
pub const FORMAT: &str = "tsunagu-derived-v3";

/// The default state folder of a store: `$TSUNAGU_STATE_DIR`, else the user's
/// state directory, in a subfolder named for the store's path.
pub fn default_state_dir(store: &Path) -> PathBuf {
    let base = std::env::var_os("TSUNAGU_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|p| PathBuf::from(p).join("tsunagu")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/tsunagu")))
        .unwrap_or_else(|| std::env::temp_dir().join("tsunagu-state"));
    let canonical = store.canonicalize().unwrap_or_else(|_| store.to_path_buf());
    let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    base.join(format!("{name}-{}", &hex::encode(digest)[..12]))
}

/// A fingerprint of every file of the store (path, size, modification time):
/// derived state is reused while it is unchanged.
pub fn fingerprint(store: &Path) -> Result<String> {
    Ok(fingerprint_of(&entries(store)?))
}

/// Every file of the store as `path\tsize\tmtime` lines, sorted.
pub fn entries(store: &Path) -> Result<Vec<String>> {
    let mut entries = Vec::new();
    walk(store, store, &mut entries)?;
    entries.sort();
    Ok(entries)
}

/// The fingerprint of a store's [`entries`].
pub fn fingerprint_of(entries: &[String]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(FORMAT.as_bytes());
    for e in entries {
        hasher.update(e.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())[..24].to_owned()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| CatalogError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| CatalogError::io(dir, e))?;
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|e| CatalogError::io(&path, e))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(format!("{}\t{}\t{}", rel.display(), meta.len(), mtime));
        }
    }
    Ok(())
}

/// Writes a file atomically: a temporary file in the same folder, fsynced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| CatalogError::state(dir, e))?;
    let tmp = temp_sibling(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CatalogError::state(path, e)
    })
}

/// A unique temporary name beside `path`.
pub fn temp_sibling(path: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Fsyncs a folder so that a rename in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "x\n1\n").unwrap();
        let a = fingerprint(dir.path()).unwrap();
        assert_eq!(a, fingerprint(dir.path()).unwrap());
        std::fs::write(dir.path().join("a.csv"), "x\n12\n").unwrap();
        assert_ne!(a, fingerprint(dir.path()).unwrap());
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let leftovers = std::fs::read_dir(p.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1);
    }
}
