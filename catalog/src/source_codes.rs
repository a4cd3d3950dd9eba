//! Source codes shown as standard concepts.
//!
//! National data arrives in its own code systems (disease-name codes,
//! receipt drug and procedure codes), not in the standard concepts studies
//! are written on. A source's `[source.codes]` names, per table, the
//! vocabulary its `<domain>_source_value` codes belong to; the table is then
//! shown with
//!
//! - `<domain>_source_concept_id`: the code's concept in that vocabulary
//!   (where the files carry none, or 0);
//! - `<domain>_concept_id`: the standard concept the code `Maps to` (where
//!   the files carry none, or 0), 0 for a code with no mapping, as OMOP
//!   writes an unmapped record.
//!
//! The mapping is read from `vocab.concept` and `vocab.concept_relationship`
//! when the store opens, so a steward who loads newer masters gets the new
//! mapping on the next open. A code is looked up among the vocabulary's
//! concepts whatever their validity (records keep the code valid when they
//! were written); a code used by a deprecated and a valid concept names the
//! valid one. Only `Maps to` relationships that are not invalid count; a
//! code mapped to several standard concepts takes the smallest id.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, Int64Builder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{SessionContext, col};

use crate::error::{CatalogError, Result};
use crate::manifest::Manifest;
use crate::store::VOCAB_SCHEMA;
use crate::tables::{ColumnSource, TableDef};

/// A vocabulary's codes: code -> (its concept, the standard concept it maps to, 0 if none).
type CodeMap = HashMap<String, (i64, i64)>;

/// The coded tables of a store, ready to be shown with standard concepts.
#[derive(Debug, Default, Clone)]
pub struct SourceCodes {
    /// (schema, table) -> how the table's codes are shown.
    tables: HashMap<(String, String), Arc<CodedTable>>,
}

/// One coded table: which columns hold the code and the concepts, and the
/// lookups that fill them.
#[derive(Debug)]
pub struct CodedTable {
    /// The delivered column holding the codes (`<domain>_source_value`).
    pub code_column: String,
    /// The shown standard concept column (`<domain>_concept_id`).
    pub concept_column: String,
    /// The shown source concept column (`<domain>_source_concept_id`), when the table has one.
    pub source_concept_column: Option<String>,
    standard: Arc<ScalarUDF>,
    source: Arc<ScalarUDF>,
}

impl CodedTable {
    /// The expression of a shown concept column, given the delivered
    /// value's expression (a NULL literal when not delivered); `None` for
    /// columns the codes do not fill.
    pub fn shown(&self, column: &str, delivered: Expr) -> Option<Expr> {
        let code = cast_text(col(datafusion::common::Column::new_unqualified(
            &self.code_column,
        )));
        if column == self.concept_column {
            Some(self.standard.call(vec![delivered, code]))
        } else if self.source_concept_column.as_deref() == Some(column) {
            Some(self.source.call(vec![delivered, code]))
        } else {
            None
        }
    }
}

fn cast_text(e: Expr) -> Expr {
    datafusion::logical_expr::cast(e, DataType::Utf8)
}

impl SourceCodes {
    /// The coding of table `schema.name`, if its source declares one.
    pub fn table(&self, schema: &str, name: &str) -> Option<&Arc<CodedTable>> {
        self.tables.get(&(schema.to_owned(), name.to_owned()))
    }

    /// Reads the mappings the manifest's `[source.codes]` need from the
    /// store's vocabulary tables; checks every named table and vocabulary.
    pub async fn load(
        root: &Path,
        manifest: &Manifest,
        tables: &[TableDef],
    ) -> Result<SourceCodes> {
        let wanted: Vec<(&str, &str, &str)> = manifest
            .sources
            .iter()
            .flat_map(|s| {
                s.codes
                    .iter()
                    .map(move |(t, v)| (s.name.as_str(), t.as_str(), v.as_str()))
            })
            .collect();
        if wanted.is_empty() {
            return Ok(SourceCodes::default());
        }
        let manifest_path = root.join("rwd.toml");
        let refuse = |source: &str, message: String| {
            CatalogError::manifest(
                &manifest_path,
                format!("source {source:?}: [source.codes]: {message}"),
            )
        };
        let vocab = |name: &str| {
            tables
                .iter()
                .find(|t| t.schema == VOCAB_SCHEMA && t.name == name)
        };
        let (Some(concept), Some(relationship)) = (vocab("concept"), vocab("concept_relationship"))
        else {
            return Err(refuse(
                wanted[0].0,
                "mapping codes needs vocab.concept and vocab.concept_relationship in the [vocabulary] folder".into(),
            ));
        };
        let mut vocabularies: Vec<&str> = wanted.iter().map(|w| w.2).collect();
        vocabularies.sort();
        vocabularies.dedup();
        let maps = read_maps(concept, relationship, &vocabularies).await?;
        let mut out = SourceCodes::default();
        for (source, table, vocabulary) in wanted {
            let Some(def) = tables
                .iter()
                .find(|t| t.schema == source && t.name == table)
            else {
                return Err(refuse(
                    source,
                    format!("table {table} is not among the source's tables"),
                ));
            };
            let Some(map) = maps.get(vocabulary).filter(|m| !m.is_empty()) else {
                return Err(refuse(
                    source,
                    format!(
                        "vocabulary {vocabulary:?} (for {table}) has no concepts in vocab.concept"
                    ),
                ));
            };
            let Some((code_column, concept_column, source_concept_column)) = coded_columns(def)
            else {
                return Err(refuse(
                    source,
                    format!(
                        "table {table} has no delivered <domain>_source_value column beside a <domain>_concept_id column"
                    ),
                ));
            };
            // Codes are text (leading zeros count); concepts are integers.
            let code_type = def
                .file_schema
                .field_with_name(&code_column)
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Null);
            if !crate::tables::is_text(&code_type) {
                return Err(refuse(
                    source,
                    format!(
                        "{table}.{code_column} holds the codes and must be delivered as text (it is {code_type})"
                    ),
                ));
            }
            for c in std::iter::once(&concept_column).chain(source_concept_column.as_ref()) {
                if def
                    .columns
                    .iter()
                    .any(|s| &s.name == c && s.data_type != DataType::Int64)
                {
                    return Err(refuse(
                        source,
                        format!(
                            "{table}.{c} is filled from the codes and must be an integer column"
                        ),
                    ));
                }
            }
            let udf = |standard| {
                Arc::new(ScalarUDF::new_from_impl(CodedConcept {
                    vocabulary: vocabulary.to_owned(),
                    map: map.clone(),
                    standard,
                    signature: Signature::exact(
                        vec![DataType::Int64, DataType::Utf8],
                        Volatility::Immutable,
                    ),
                }))
            };
            out.tables.insert(
                (source.to_owned(), table.to_owned()),
                Arc::new(CodedTable {
                    code_column,
                    concept_column,
                    source_concept_column,
                    standard: udf(true),
                    source: udf(false),
                }),
            );
        }
        Ok(out)
    }
}

/// (code column, concept column, source concept column) of a table: the
/// first delivered `<d>_source_value` whose `<d>_concept_id` is shown.
fn coded_columns(def: &TableDef) -> Option<(String, String, Option<String>)> {
    let shown = |n: &str| def.columns.iter().any(|c| c.name == n);
    def.columns.iter().find_map(|c| {
        let stem = c.name.strip_suffix("_source_value")?;
        let ColumnSource::File(file) = &c.source else {
            return None;
        };
        let concept = format!("{stem}_concept_id");
        if !shown(&concept) {
            return None;
        }
        let source_concept = format!("{stem}_source_concept_id");
        Some((
            file.clone(),
            concept,
            shown(&source_concept).then_some(source_concept),
        ))
    })
}

/// Reads code -> (concept, standard concept) for each vocabulary.
async fn read_maps(
    concept: &TableDef,
    relationship: &TableDef,
    vocabularies: &[&str],
) -> Result<BTreeMap<String, Arc<CodeMap>>> {
    let ctx = SessionContext::new();
    let text = |c: &str| cast_text(col(datafusion::common::Column::new_unqualified(c)));
    let id = |c: &str| {
        datafusion::logical_expr::cast(
            col(datafusion::common::Column::new_unqualified(c)),
            DataType::Int64,
        )
    };
    let has = |def: &TableDef, c: &str| def.file_schema.field_with_name(c).is_ok();
    for c in ["concept_id", "vocabulary_id", "concept_code"] {
        if !has(concept, c) {
            return Err(CatalogError::malformed(
                concept
                    .files
                    .first()
                    .map(|p| p.as_path())
                    .unwrap_or(Path::new("vocab/concept")),
                Some(c),
                None,
                "vocab.concept lacks a column that mapping source codes needs".to_owned(),
            ));
        }
    }
    for c in ["concept_id_1", "concept_id_2", "relationship_id"] {
        if !has(relationship, c) {
            return Err(CatalogError::malformed(
                relationship
                    .files
                    .first()
                    .map(|p| p.as_path())
                    .unwrap_or(Path::new("vocab/concept_relationship")),
                Some(c),
                None,
                "vocab.concept_relationship lacks a column that mapping source codes needs"
                    .to_owned(),
            ));
        }
    }
    let invalid = |def: &TableDef| {
        if has(def, "invalid_reason") {
            text("invalid_reason")
        } else {
            datafusion::prelude::lit(datafusion::common::ScalarValue::Utf8(None))
        }
    };
    // Concepts of the wanted vocabularies: (id, vocabulary, code, valid).
    let concepts = ctx
        .read_table(concept.file_provider()?)?
        .select(vec![
            id("concept_id").alias("id"),
            text("vocabulary_id").alias("vocabulary"),
            text("concept_code").alias("code"),
            invalid(concept).alias("invalid"),
        ])?
        .collect()
        .await?;
    let mut by_vocabulary: BTreeMap<String, HashMap<String, (i64, bool)>> = vocabularies
        .iter()
        .map(|v| (v.to_string(), HashMap::new()))
        .collect();
    let mut wanted_ids: HashMap<i64, ()> = HashMap::new();
    for b in &concepts {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let (vocab, code, inv) = (
            b.column(1).as_string::<i32>(),
            b.column(2).as_string::<i32>(),
            b.column(3).as_string::<i32>(),
        );
        for r in 0..b.num_rows() {
            if ids.is_null(r) || vocab.is_null(r) || code.is_null(r) {
                continue;
            }
            let Some(codes) = by_vocabulary.get_mut(vocab.value(r)) else {
                continue;
            };
            let valid = inv.is_null(r) || inv.value(r).is_empty();
            let entry = codes.entry(code.value(r).to_owned());
            use std::collections::hash_map::Entry;
            match entry {
                Entry::Vacant(e) => {
                    e.insert((ids.value(r), valid));
                }
                Entry::Occupied(mut e) if valid && !e.get().1 => {
                    e.insert((ids.value(r), valid));
                }
                Entry::Occupied(_) => {}
            }
            wanted_ids.insert(ids.value(r), ());
        }
    }
    // Valid `Maps to` of those concepts, smallest target first.
    let rels = ctx
        .read_table(relationship.file_provider()?)?
        .select(vec![
            id("concept_id_1").alias("a"),
            id("concept_id_2").alias("b"),
            text("relationship_id").alias("rel"),
            invalid(relationship).alias("invalid"),
        ])?
        .collect()
        .await?;
    let mut maps_to: HashMap<i64, i64> = HashMap::new();
    for b in &rels {
        let (a, t) = (
            b.column(0).as_primitive::<Int64Type>(),
            b.column(1).as_primitive::<Int64Type>(),
        );
        let (rel, inv) = (
            b.column(2).as_string::<i32>(),
            b.column(3).as_string::<i32>(),
        );
        for r in 0..b.num_rows() {
            if a.is_null(r) || t.is_null(r) || rel.is_null(r) || rel.value(r) != "Maps to" {
                continue;
            }
            if !(inv.is_null(r) || inv.value(r).is_empty()) || !wanted_ids.contains_key(&a.value(r))
            {
                continue;
            }
            let e = maps_to.entry(a.value(r)).or_insert(i64::MAX);
            *e = (*e).min(t.value(r));
        }
    }
    Ok(by_vocabulary
        .into_iter()
        .map(|(v, codes)| {
            let map: CodeMap = codes
                .into_iter()
                .map(|(code, (id, _))| (code, (id, maps_to.get(&id).copied().unwrap_or(0))))
                .collect();
            (v, Arc::new(map))
        })
        .collect())
}

/// The concept of a record: the delivered one when present and not 0, else
/// looked up from the record's code. Used inside the shown tables' plans,
/// never called by name in SQL.
#[derive(Debug)]
struct CodedConcept {
    vocabulary: String,
    map: Arc<CodeMap>,
    /// The standard concept the code maps to, or the code's own concept.
    standard: bool,
    signature: Signature,
}

impl PartialEq for CodedConcept {
    fn eq(&self, o: &Self) -> bool {
        self.vocabulary == o.vocabulary
            && self.standard == o.standard
            && Arc::ptr_eq(&self.map, &o.map)
    }
}
impl Eq for CodedConcept {}
impl std::hash::Hash for CodedConcept {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.vocabulary.hash(h);
        self.standard.hash(h);
        (Arc::as_ptr(&self.map) as usize).hash(h);
    }
}

impl ScalarUDFImpl for CodedConcept {
    fn name(&self) -> &str {
        if self.standard {
            "tsunagu_standard_concept_of_code"
        } else {
            "tsunagu_concept_of_code"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let [delivered, code] = args.args.as_slice() else {
            return exec_err!("{} takes two arguments", self.name());
        };
        let delivered: ArrayRef = delivered.to_array(n)?;
        let delivered = cast(&delivered, &DataType::Int64)?;
        let delivered: &Int64Array = delivered.as_primitive::<Int64Type>();
        let code = cast(&code.to_array(n)?, &DataType::Utf8)?;
        let code = code.as_string::<i32>();
        let mut out = Int64Builder::with_capacity(n);
        for r in 0..n {
            if delivered.is_valid(r) && delivered.value(r) != 0 {
                out.append_value(delivered.value(r));
            } else if code.is_null(r) {
                // No code: the delivered value (0 or NULL) as it is.
                out.append_option(delivered.is_valid(r).then(|| delivered.value(r)));
            } else {
                let found = self.map.get(code.value(r));
                out.append_value(match found {
                    Some((concept, standard)) => {
                        if self.standard {
                            *standard
                        } else {
                            *concept
                        }
                    }
                    None => 0,
                });
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
