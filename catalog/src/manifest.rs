//! The store manifest `rwd.toml`: sources, linkage and vocabulary.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{CatalogError, Result};

/// The parsed `rwd.toml` of a store.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The store's name.
    pub name: String,
    /// The delivered sources, in manifest order.
    pub sources: Vec<SourceSpec>,
    /// Path of the linkage table (file or folder), relative to the store.
    pub linkage: Option<PathBuf>,
    /// Path of the vocabulary folder, relative to the store.
    pub vocabulary: Option<PathBuf>,
    /// The `[privacy]` table, read by the engine's privacy layer.
    pub privacy: Option<toml::Table>,
}

/// One delivered source: a schema in SQL.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Schema name in SQL.
    pub name: String,
    /// Folder of the source's tables, relative to the store.
    pub path: PathBuf,
    /// Name of the person-key column in this source's tables.
    pub person_key: String,
    /// Tables whose source values are codes of a source vocabulary (table ->
    /// vocabulary id, `[source.codes]`): shown with the standard concepts
    /// the codes map to (see `source_codes`).
    pub codes: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    store: Option<RawStore>,
    #[serde(default)]
    source: Vec<RawSource>,
    linkage: Option<RawPath>,
    vocabulary: Option<RawPath>,
    privacy: Option<toml::Table>,
}

#[derive(Deserialize)]
struct RawStore {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    path: Option<String>,
    person_key: Option<String>,
    #[serde(default)]
    codes: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPath {
    path: String,
}

/// Schema names the engine reserves for itself.
const RESERVED: &[&str] = &[
    "vocab",
    "linked",
    "linkage",
    "public",
    "pg_catalog",
    "information_schema",
    "system",
];

impl Manifest {
    /// Reads and checks `rwd.toml` in the store folder.
    pub fn load(store: &Path) -> Result<Manifest> {
        let path = store.join("rwd.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CatalogError::manifest(&path, format!("cannot read the manifest: {e}")))?;
        Self::parse(&text, store, &path)
    }

    /// The vocabulary folder manifest text names, unchecked (`None` also
    /// when the text is no manifest: [`Manifest::parse`] says why).
    pub fn vocabulary_in(text: &str) -> Option<PathBuf> {
        let raw: RawManifest = toml::from_str(text).ok()?;
        raw.vocabulary.map(|v| PathBuf::from(v.path))
    }

    /// Parses manifest text; `store` is the folder the paths are relative to.
    pub fn parse(text: &str, store: &Path, path: &Path) -> Result<Manifest> {
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| CatalogError::manifest(path, e.to_string().trim_end().to_owned()))?;
        let name = raw.store.and_then(|s| s.name).unwrap_or_else(|| {
            store
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "store".into())
        });
        if raw.source.is_empty() {
            return Err(CatalogError::manifest(path, "no [[source]] is declared"));
        }
        let mut sources = Vec::with_capacity(raw.source.len());
        for s in raw.source {
            if !is_identifier(&s.name) {
                return Err(CatalogError::manifest(
                    path,
                    format!(
                        "source name {:?} is not a valid schema name (lower-case letters, digits and _; starting with a letter)",
                        s.name
                    ),
                ));
            }
            if RESERVED.contains(&s.name.as_str()) {
                return Err(CatalogError::manifest(
                    path,
                    format!("source name {:?} is reserved by the engine", s.name),
                ));
            }
            if sources.iter().any(|o: &SourceSpec| o.name == s.name) {
                return Err(CatalogError::manifest(
                    path,
                    format!("source {:?} is declared twice", s.name),
                ));
            }
            let rel = PathBuf::from(s.path.unwrap_or_else(|| s.name.clone()));
            check_inside(path, &rel, &format!("source {:?}", s.name))?;
            let folder = store.join(&rel);
            if !folder.is_dir() {
                return Err(CatalogError::manifest(
                    path,
                    format!(
                        "source {:?}: folder {} does not exist",
                        s.name,
                        rel.display()
                    ),
                ));
            }
            let person_key = s.person_key.unwrap_or_else(|| "person_id".into());
            if person_key.is_empty() {
                return Err(CatalogError::manifest(
                    path,
                    format!("source {:?}: person_key is empty", s.name),
                ));
            }
            for (table, vocabulary) in &s.codes {
                if !is_identifier(table) || vocabulary.trim().is_empty() {
                    return Err(CatalogError::manifest(
                        path,
                        format!(
                            "source {:?}: [source.codes] maps a table name to a vocabulary id (table = \"vocabulary\"); {table:?} is not usable",
                            s.name
                        ),
                    ));
                }
            }
            sources.push(SourceSpec {
                name: s.name,
                path: rel,
                person_key,
                codes: s.codes,
            });
        }
        let linkage = match raw.linkage {
            Some(l) => {
                let rel = PathBuf::from(l.path);
                check_inside(path, &rel, "[linkage]")?;
                if !store.join(&rel).exists() {
                    return Err(CatalogError::manifest(
                        path,
                        format!("[linkage]: {} does not exist", rel.display()),
                    ));
                }
                Some(rel)
            }
            None => None,
        };
        let vocabulary = match raw.vocabulary {
            Some(v) => {
                let rel = PathBuf::from(v.path);
                check_inside(path, &rel, "[vocabulary]")?;
                if !store.join(&rel).is_dir() {
                    return Err(CatalogError::manifest(
                        path,
                        format!("[vocabulary]: folder {} does not exist", rel.display()),
                    ));
                }
                Some(rel)
            }
            None => None,
        };
        Ok(Manifest {
            name,
            sources,
            linkage,
            vocabulary,
            privacy: raw.privacy,
        })
    }
}

/// True for a plain lower-case SQL identifier.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_inside(manifest: &Path, rel: &Path, what: &str) -> Result<()> {
    let escapes = rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if escapes {
        return Err(CatalogError::manifest(
            manifest,
            format!(
                "{what}: path {} must be relative and inside the store",
                rel.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ndb")).unwrap();
        Manifest::parse(text, dir.path(), &dir.path().join("rwd.toml"))
    }

    #[test]
    fn minimal_manifest_defaults() {
        let m = parse("[[source]]\nname = \"ndb\"\n").unwrap();
        assert_eq!(m.sources[0].path, PathBuf::from("ndb"));
        assert_eq!(m.sources[0].person_key, "person_id");
        assert!(m.linkage.is_none());
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse("[[source]]\nname = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("folder x does not exist"), "{e}");
        let e = parse("[[source]]\nname = 3\n").unwrap_err().to_string();
        assert!(e.contains("rwd.toml"), "{e}");
        let e = parse("").unwrap_err().to_string();
        assert!(e.contains("no [[source]]"), "{e}");
        let e = parse("[[source]]\nname = \"vocab\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("reserved"), "{e}");
        let e = parse("[[source]]\nname = \"ndb\"\n[linkage]\npath = \"../x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside the store"), "{e}");
        let e = parse("[[source]]\nname = \"ndb\"\nperson = \"k\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
