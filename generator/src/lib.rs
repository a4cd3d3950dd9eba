//! Deterministic synthetic stores modelled on Japan's public health databases.
//!
//! [`generate`] writes a store (see the data model) with three sources and a
//! linkage table:
//!
//! - `ndb`, a claims database: persons, insurance enrolment as observation
//!   periods, outpatient and inpatient visits, ICD-10 coded conditions, drug
//!   dispensings with repeat-prescription patterns, gaps and stops,
//!   procedures, annual health-check measurements (ages 40–74), deaths;
//!   about 3% of persons changed insurer and have two keys;
//! - `dpc`, an inpatient case-mix database: admissions with DPC codes,
//!   main diagnoses and procedures;
//! - `kaigo`, a long-term-care database: care-level certifications and
//!   monthly care services, mostly for persons aged 65 and over;
//! - `linkage/person_link`: most keys link, some do not;
//! - `vocab`: real ICD-10 chapters, blocks and codes and ATC levels 1–5 for
//!   the codes used, ingredients and products under them, and a complete
//!   `concept_ancestor`.
//!
//! Planted effects, so that studies have a known answer (see [`EFFECTS`]).
//! The same (persons, seed) always gives byte-identical files.

pub mod jp_codes;
pub mod planted;
pub mod sim;
pub mod vocab;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use sim::{Chunk, TABLES};
use vocab::Vocabulary;
use writer::{RowBuf, TableFile, V};

/// Errors from generating a store.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl GenerateError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        GenerateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Number of simulated persons.
    pub persons: u64,
    /// Seed: the same seed gives the same store.
    pub seed: u64,
    /// Worker threads (the output does not depend on it).
    pub threads: usize,
    /// Number the vocabulary's concepts differently, drawn by this seed, as
    /// another store would (`None`: the standard ids). Codes, names and the
    /// data are the same; only the concept ids change.
    pub renumber: Option<u64>,
    /// The codes the claims (`ndb`) are delivered in.
    pub codes: Codes,
}

/// The codes claims are delivered in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Codes {
    /// Standard concepts (ICD-10, products under ATC), source values as ICD-10 and ATC codes.
    #[default]
    Standard,
    /// Receipt codes only (disease-name, receipt drug and procedure codes),
    /// concept ids 0, as national claims arrive; the manifest's
    /// `[source.codes]` maps them.
    Receipt,
}

/// The planted effects, as documented in the generated store's README.
pub const EFFECTS: &str = "\
- NSAIDs (ATC M01A: ibuprofen, diclofenac, celecoxib) triple the rate of
  gastrointestinal haemorrhage (ICD-10 K92.2) in the 30 days after a new
  use (no NSAID dispensed in the 180 days before). Baseline rate: 0.02 per
  person-year for everyone; acetaminophen (N02BE01) has no effect, so a
  new-user comparison NSAID vs acetaminophen has a 30-day risk ratio near 3,
  and a self-controlled case series an incidence rate ratio near 3.
- Hip fracture (S72.0, admitted in claims and in the case-mix source) is
  followed by a long-term-care certification within about a year in 60% of
  cases (stroke, I63.9: 40%), against a low yearly baseline.
- Prescribing cascade: 15% of amlodipine (C08CA01) starters begin
  furosemide (C03CA01) for oedema (R60.0) 7-90 days later; 2% of all
  persons get furosemide at a random time. A sequence symmetry analysis of
  amlodipine then furosemide gives an adjusted sequence ratio well above 1.
- Implausible records, as real deliveries have: about 0.1% of dispensings
  end before they start, 0.2% of diagnoses are unmapped (concept 0), 0.5% of
  persons have a visit before their enrolment, a few health-check values are
  dated in 2031, and 1% of case-mix keys have no person row; also a few
  days supplies of 0, health-check values ten times too large, case-mix
  birth years of 1800, and claims enrolment periods delivered twice,
  overlapping. `planted.json` counts each kind exactly.
";

/// Tables written as a folder of yearly deliveries (source, table, the date
/// that places a row in its year); their files' modification times are the
/// delivery dates.
pub const DELIVERED_YEARLY: &[(&str, &str, &str)] = &[("kaigo", "care_service", "service_month")];

/// Generates a store into `out` (created if missing; existing tables are replaced).
///
/// `progress` is called with (persons done, persons in all).
pub fn generate(
    opts: &GenerateOptions,
    out: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(), GenerateError> {
    if opts.persons == 0 {
        return Err(GenerateError::Invalid(
            "--persons must be at least 1".into(),
        ));
    }
    if opts.persons >= 40_000_000 {
        return Err(GenerateError::Invalid(
            "--persons must be below 40,000,000 (row ids are person * 100000 + n)".into(),
        ));
    }
    let vocab = Vocabulary::build();
    let renumbering = opts.renumber.map(|seed| vocab.renumbering(seed));
    let mut files = Vec::new();
    for (source, table, cols) in TABLES {
        let dir = out.join(source);
        std::fs::create_dir_all(&dir).map_err(|e| GenerateError::io(&dir, e))?;
        files.push(
            match DELIVERED_YEARLY
                .iter()
                .find(|(s, t, _)| s == source && t == table)
            {
                // Delivered monthly in real data: here one delivery per year.
                Some((_, _, date)) => writer::TableSink::Yearly(writer::YearlyFiles::create(
                    &dir.join(table),
                    writer::schema(cols),
                    date,
                )?),
                None => writer::TableSink::One(Box::new(TableFile::create(
                    &dir.join(format!("{table}.parquet")),
                    writer::schema(cols),
                )?)),
            },
        );
    }
    const CHUNK: u64 = 2048;
    let chunks = opts.persons.div_ceil(CHUNK);
    let mut planted = planted::Planted::default();
    let threads = opts.threads.max(1) as u64;
    let (tx, rx) = mpsc::sync_channel::<(u64, Chunk)>(threads as usize * 2);
    std::thread::scope(|scope| -> Result<(), GenerateError> {
        for w in 0..threads {
            let tx = tx.clone();
            let vocab = &vocab;
            scope.spawn(move || {
                let mut k = w;
                while k < chunks {
                    let mut chunk = Chunk::new();
                    let end = ((k + 1) * CHUNK).min(opts.persons);
                    for i in k * CHUNK..end {
                        sim::simulate(&mut chunk, vocab, opts.seed, i);
                    }
                    if tx.send((k, chunk)).is_err() {
                        return;
                    }
                    k += threads;
                }
            });
        }
        drop(tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut next = 0u64;
        for (k, chunk) in rx {
            planted.add(&chunk.planted);
            pending.insert(k, chunk);
            while let Some(mut chunk) = pending.remove(&next) {
                for ((file, rows), (source, table, _)) in
                    files.iter_mut().zip(chunk.tables.iter_mut()).zip(TABLES)
                {
                    let mut batch = rows.take();
                    if opts.codes == Codes::Receipt && *source == "ndb" {
                        batch = jp_codes::receipt_batch(table, batch, &vocab.receipt);
                    }
                    match &renumbering {
                        Some(map) => file.write(&writer::renumber(batch, map))?,
                        None => file.write(&batch)?,
                    }
                }
                next += 1;
                progress((next * CHUNK).min(opts.persons), opts.persons);
            }
        }
        Ok(())
    })?;
    for f in files {
        f.finish()?;
    }
    match &renumbering {
        Some(map) => write_vocabulary(&vocab.renumbered(map), &out.join("vocab"))?,
        None => write_vocabulary(&vocab, &out.join("vocab"))?,
    }
    let ndb_codes = match opts.codes {
        Codes::Standard => "",
        Codes::Receipt => {
            "
[source.codes]
condition_occurrence = \"JP Disease\"
drug_exposure = \"JP Receipt Drug\"
procedure_occurrence = \"JP Receipt Procedure\"
"
        }
    };
    let manifest = format!(
        "\
[store]
name = \"tsunagu-synthetic\"

[[source]]
name = \"ndb\"
path = \"ndb\"
person_key = \"person_key\"
{ndb_codes}
[[source]]
name = \"dpc\"
path = \"dpc\"
person_key = \"person_key\"

[[source]]
name = \"kaigo\"
path = \"kaigo\"
person_key = \"person_key\"

[linkage]
path = \"linkage/person_link.parquet\"

[vocabulary]
path = \"vocab\"
"
    );
    write(&out.join("rwd.toml"), &manifest)?;
    let readme = format!(
        "# Synthetic store: {} persons, seed {}\n\nGenerated by `tsunagu generate`. Not real data.\n\n## Planted effects\n\n{EFFECTS}",
        opts.persons, opts.seed
    );
    write(&out.join("README.md"), &readme)?;
    let truth = serde_json::to_string_pretty(&planted)
        .map_err(|e| GenerateError::Invalid(format!("planted.json: {e}")))?;
    write(&out.join("planted.json"), &truth)?;
    write(&out.join("quality.toml"), &planted::quality_toml())
}

fn write(path: &Path, text: &str) -> Result<(), GenerateError> {
    std::fs::write(path, text).map_err(|e| GenerateError::io(path, e))
}

fn write_vocabulary(v: &Vocabulary, dir: &Path) -> Result<(), GenerateError> {
    std::fs::create_dir_all(dir).map_err(|e| GenerateError::io(dir, e))?;
    let valid_start = sim::ymd(1970, 1, 1);
    let valid_end = sim::ymd(2099, 12, 31);
    let table = |name: &str, cols: &[(&str, char)], fill: &mut dyn FnMut(&mut RowBuf)| {
        let schema = writer::schema(cols);
        let mut rows = RowBuf::new(schema.clone());
        fill(&mut rows);
        let mut f = TableFile::create(&dir.join(format!("{name}.parquet")), schema)?;
        f.write(&rows.take())?;
        f.finish()
    };
    table(
        "concept",
        &[
            ("concept_id", 'i'),
            ("concept_name", 's'),
            ("domain_id", 's'),
            ("vocabulary_id", 's'),
            ("concept_class_id", 's'),
            ("standard_concept", 's'),
            ("concept_code", 's'),
            ("valid_start_date", 'd'),
            ("valid_end_date", 'd'),
            ("invalid_reason", 's'),
        ],
        &mut |rows| {
            for c in &v.concepts {
                let standard = c.standard.map(V::S).unwrap_or(V::Null);
                rows.row(&[
                    V::I(c.id),
                    V::S(&c.name),
                    V::S(c.domain),
                    V::S(c.vocabulary),
                    V::S(c.class),
                    standard,
                    V::S(&c.code),
                    V::D(c.valid_start.unwrap_or(valid_start)),
                    V::D(c.valid_end.unwrap_or(valid_end)),
                    c.invalid.map(V::S).unwrap_or(V::Null),
                ]);
            }
        },
    )?;
    table(
        "concept_ancestor",
        &[
            ("ancestor_concept_id", 'i'),
            ("descendant_concept_id", 'i'),
            ("min_levels_of_separation", 'i'),
            ("max_levels_of_separation", 'i'),
        ],
        &mut |rows| {
            for (a, d, min, max) in v.ancestors() {
                rows.row(&[V::I(a), V::I(d), V::I(min), V::I(max)]);
            }
        },
    )?;
    table(
        "concept_relationship",
        &[
            ("concept_id_1", 'i'),
            ("concept_id_2", 'i'),
            ("relationship_id", 's'),
            ("valid_start_date", 'd'),
            ("valid_end_date", 'd'),
            ("invalid_reason", 's'),
        ],
        &mut |rows| {
            for (child, parent) in &v.is_a {
                rows.row(&[
                    V::I(*child),
                    V::I(*parent),
                    V::S("Is a"),
                    V::D(valid_start),
                    V::D(valid_end),
                    V::Null,
                ]);
                rows.row(&[
                    V::I(*parent),
                    V::I(*child),
                    V::S("Subsumes"),
                    V::D(valid_start),
                    V::D(valid_end),
                    V::Null,
                ]);
            }
            for c in v.concepts.iter().filter(|c| c.standard == Some("S")) {
                rows.row(&[
                    V::I(c.id),
                    V::I(c.id),
                    V::S("Maps to"),
                    V::D(valid_start),
                    V::D(valid_end),
                    V::Null,
                ]);
            }
            for (a, b, rel) in &v.relationships {
                for (x, y, r) in [(a, b, *rel), (b, a, jp_codes::reverse(rel))] {
                    rows.row(&[
                        V::I(*x),
                        V::I(*y),
                        V::S(r),
                        V::D(valid_start),
                        V::D(valid_end),
                        V::Null,
                    ]);
                }
            }
        },
    )?;
    table(
        "concept_synonym",
        &[
            ("concept_id", 'i'),
            ("concept_synonym_name", 's'),
            ("language_concept_id", 'i'),
        ],
        &mut |rows| {
            for (c, name) in &v.synonyms {
                rows.row(&[V::I(*c), V::S(name), V::I(jp_codes::JAPANESE)]);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(dir: &Path) -> Vec<(String, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            let mut names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for p in names {
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        for source in ["ndb", "dpc", "kaigo", "linkage", "vocab"] {
            walk(&dir.join(source), &mut out);
        }
        for (name, _) in &mut out {
            *name = name.replacen(&dir.display().to_string(), "", 1);
        }
        out
    }

    #[test]
    fn same_seed_same_bytes_whatever_the_threads() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let opts = GenerateOptions {
            persons: 3000,
            seed: 7,
            threads: 1,
            renumber: None,
            codes: Codes::Standard,
        };
        generate(&opts, a.path(), &|_, _| {}).unwrap();
        generate(
            &GenerateOptions { threads: 3, ..opts },
            b.path(),
            &|_, _| {},
        )
        .unwrap();
        assert_eq!(digest(a.path()), digest(b.path()));
        let c = tempfile::tempdir().unwrap();
        generate(
            &GenerateOptions {
                seed: 8,
                threads: 2,
                ..opts
            },
            c.path(),
            &|_, _| {},
        )
        .unwrap();
        assert_ne!(digest(a.path()), digest(c.path()));
    }
}
