//! Concept sets by vocabulary code: `concept_set(vocabulary_id, code, ...)`
//! and `in_concept_set(concept_id, vocabulary_id, code, ...)`.
//!
//! A code names a concept of the store's vocabulary (`vocab.concept`'s
//! `vocabulary_id` and `concept_code`) together with all its descendants and,
//! when the code maps to standard concepts (`Maps to`), those concepts with
//! theirs: an OHDSI concept set with descendants and mapped concepts, or an
//! OpenSAFELY codelist. A code written `-CODE` is excluded with its
//! descendants. A code the vocabulary lacks is an error naming it, so a study
//! never runs silently on nothing; the same codes give the same set on any
//! store, whatever its concept ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use roaring::RoaringTreemap;

use crate::docs;
use crate::vocab::{Probe, VocabGraph};

/// The concepts of a list of codes of one vocabulary.
pub fn resolve(
    graph: &VocabGraph,
    name: &str,
    vocabulary: &str,
    codes: &[String],
) -> Result<RoaringTreemap> {
    if codes.is_empty() {
        return plan_err!("{name}: name at least one code after the vocabulary id");
    }
    if !graph.has_vocabulary(vocabulary) {
        return plan_err!("{name}: the store's vocabulary has no vocabulary_id '{vocabulary}'");
    }
    let mut included = RoaringTreemap::new();
    let mut excluded = RoaringTreemap::new();
    for code in codes {
        let code = code.trim();
        let (set, code) = match code.strip_prefix('-') {
            Some(c) => (&mut excluded, c.trim()),
            None => (&mut included, code),
        };
        let Some(concept) = graph.concept_of(vocabulary, code) else {
            return plan_err!(
                "{name}: {vocabulary} code '{code}' is not in the store's vocabulary"
            );
        };
        let mut roots = vec![concept];
        roots.extend_from_slice(graph.related_to(concept, "Maps to"));
        for root in roots {
            for c in graph.descendants_of(root) {
                if c >= 0 {
                    set.insert(c as u64);
                }
            }
        }
    }
    included -= excluded;
    Ok(included)
}

fn text(name: &str, e: &Expr) -> Result<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Ok(s.clone()),
        Expr::Cast(c) => text(name, &c.expr),
        _ => plan_err!("{name}: the vocabulary id and the codes must be text constants"),
    }
}

fn scalar_text(name: &str, v: &ColumnarValue) -> Result<String> {
    match v {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => Ok(s.clone()),
        _ => plan_err!("{name}: the vocabulary id and the codes must be text constants"),
    }
}

/// `concept_set(vocabulary_id, code, ...)`: the set's concepts as rows (concept_id).
#[derive(Debug)]
pub struct ConceptSet {
    graph: Arc<VocabGraph>,
}

impl ConceptSet {
    /// The table function over a graph.
    pub fn new(graph: Arc<VocabGraph>) -> Self {
        Self { graph }
    }

    /// The documentation of the function.
    pub fn documentation() -> &'static Documentation {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        DOC.get_or_init(|| {
            Documentation::builder(
                docs::VOCABULARY,
                "Table function: the concepts named by vocabulary codes, as rows (concept_id BIGINT): each code's concept, its descendants, and the standard concepts it maps to with theirs; a code written '-CODE' is excluded with its descendants. An unknown code is an error. The same codes select the same concepts on any store, whatever its concept ids.",
                "SELECT concept_id FROM concept_set(vocabulary_id, code [, code ...])",
            )
            .with_argument("vocabulary_id", "A vocabulary of vocab.concept, for example 'ATC' or 'ICD10'.")
            .with_argument("code", "A concept_code of that vocabulary, for example 'M01A'; '-M01AH' excludes a branch.")
            .with_sql_example("SELECT count(DISTINCT person_id) FROM ndb.drug_exposure WHERE drug_concept_id IN (SELECT concept_id FROM concept_set('ATC', 'M01A'))")
            .build()
        })
    }
}

fn args_text(name: &str, exprs: &[Expr]) -> Result<(String, Vec<String>)> {
    let Some((vocabulary, codes)) = exprs.split_first() else {
        return plan_err!("{name} takes a vocabulary id and one or more codes");
    };
    let codes = codes.iter().map(|c| text(name, c)).collect::<Result<_>>()?;
    Ok((text(name, vocabulary)?, codes))
}

impl TableFunctionImpl for ConceptSet {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let (vocabulary, codes) = args_text("concept_set", args.exprs())?;
        let set = resolve(&self.graph, "concept_set", &vocabulary, &codes)?;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "concept_id",
            DataType::Int64,
            false,
        )]));
        let ids = Int64Array::from_iter_values(set.iter().map(|c| c as i64));
        let batch =
            datafusion::arrow::array::RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)])?;
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?))
    }
}

/// `in_concept_set(concept_id, vocabulary_id, code, ...)`: membership, a
/// lookup per row.
#[derive(Debug)]
pub struct InConceptSet {
    graph: Arc<VocabGraph>,
    signature: Signature,
    /// Resolved sets by their arguments.
    sets: Mutex<HashMap<Vec<String>, Arc<RoaringTreemap>>>,
}

impl InConceptSet {
    /// The function over a graph.
    pub fn new(graph: Arc<VocabGraph>) -> Self {
        Self {
            graph,
            signature: Signature::user_defined(Volatility::Immutable),
            sets: Mutex::new(HashMap::new()),
        }
    }

    fn set(&self, vocabulary: String, codes: Vec<String>) -> Result<Arc<RoaringTreemap>> {
        let mut key = vec![vocabulary];
        key.extend(codes);
        if let Some(s) = self.sets.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(s);
        }
        let set = Arc::new(resolve(&self.graph, "in_concept_set", &key[0], &key[1..])?);
        if let Ok(mut m) = self.sets.lock() {
            // A bounded cache: statements vary their code lists without end.
            if m.len() >= 256 {
                m.clear();
            }
            m.insert(key, set.clone());
        }
        Ok(set)
    }
}

impl PartialEq for InConceptSet {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.graph, &other.graph)
    }
}
impl Eq for InConceptSet {}
impl std::hash::Hash for InConceptSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "in_concept_set".hash(state);
    }
}

impl ScalarUDFImpl for InConceptSet {
    fn name(&self) -> &str {
        "in_concept_set"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let Some((first, rest)) = args.split_first() else {
            return plan_err!("in_concept_set takes (concept_id, vocabulary_id, code, ...)");
        };
        if rest.len() < 2 || !(first.is_integer() || first == &DataType::Null) {
            return plan_err!(
                "in_concept_set takes (concept_id, vocabulary_id, code, ...): an integer, then text"
            );
        }
        let mut out = vec![DataType::Int64];
        out.extend(rest.iter().map(|_| DataType::Utf8));
        Ok(out)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    /// Resolves the codes when the statement is planned, so an unknown code
    /// or a non-constant argument is a planning error.
    fn simplify(&self, args: Vec<Expr>, _: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let (vocabulary, codes) = args_text("in_concept_set", &args[1.min(args.len())..])?;
        self.set(vocabulary, codes)?;
        Ok(ExprSimplifyResult::Original(args))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some((concepts, rest)) = args.args.split_first() else {
            return plan_err!("in_concept_set takes (concept_id, vocabulary_id, code, ...)");
        };
        let Some((vocabulary, codes)) = rest.split_first() else {
            return plan_err!("in_concept_set takes (concept_id, vocabulary_id, code, ...)");
        };
        let set = self.set(
            scalar_text("in_concept_set", vocabulary)?,
            codes
                .iter()
                .map(|c| scalar_text("in_concept_set", c))
                .collect::<Result<_>>()?,
        )?;
        let probe = Probe::set(&set);
        match concepts {
            ColumnarValue::Scalar(v) => Ok(ColumnarValue::Scalar(ScalarValue::Boolean(match v {
                ScalarValue::Int64(Some(c)) => Some(probe.contains(*c)),
                _ => None,
            }))),
            ColumnarValue::Array(c) => {
                let c = c.as_primitive::<Int64Type>();
                let values = c.values();
                let bits = BooleanBuffer::collect_bool(c.len(), |i| probe.contains(values[i]));
                Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
                    bits,
                    c.nulls().cloned(),
                ))))
            }
        }
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                docs::VOCABULARY,
                "True when concept_id is in the concept set named by the codes (see concept_set): a lookup per row, as fast as is_a. Codes are resolved when the statement is planned; an unknown code is an error.",
                "in_concept_set(concept_id, vocabulary_id, code [, code ...])",
            )
            .with_argument("concept_id", "The concept to test, usually a column.")
            .with_argument("vocabulary_id", "A vocabulary of vocab.concept, for example 'ATC'.")
            .with_argument("code", "Codes of that vocabulary; '-CODE' excludes a branch.")
            .with_sql_example("SELECT count(DISTINCT person_id) FROM ndb.condition_occurrence WHERE in_concept_set(condition_concept_id, 'ICD10', 'K92.2')")
            .build()
        }))
    }
}

/// Disclosure classes: reference data only.
pub const DISCLOSURE: &[(&str, crate::Disclosure)] = &[
    ("concept_set", crate::Disclosure::Total),
    ("in_concept_set", crate::Disclosure::Total),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 <- 2 <- 3 (ATC-like), 4 a source code mapping to 2; 5 unrelated.
    fn graph() -> VocabGraph {
        let rels = vec![
            (2, 1, "Is a".to_string()),
            (3, 2, "Is a".to_string()),
            (4, 2, "Maps to".to_string()),
        ];
        VocabGraph::new(vec![], rels, &[1, 2, 3, 4, 5]).with_codes([
            (1, "ATC".into(), "M01".into()),
            (2, "ATC".into(), "M01A".into()),
            (3, "ATC".into(), "M01AE01".into()),
            (4, "ICD10".into(), "X1".into()),
            (5, "ATC".into(), "N02".into()),
        ])
    }

    fn ids(s: &RoaringTreemap) -> Vec<u64> {
        s.iter().collect()
    }

    #[test]
    fn codes_name_concepts_with_descendants_mappings_and_exclusions() {
        let g = graph();
        let r = |v: &str, c: &[&str]| {
            resolve(
                &g,
                "t",
                v,
                &c.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(ids(&r("ATC", &["M01"]).unwrap()), vec![1, 2, 3]);
        assert_eq!(ids(&r("atc", &["M01", "-M01AE01"]).unwrap()), vec![1, 2]);
        assert_eq!(ids(&r("ATC", &["M01", " -M01AE01 "]).unwrap()), vec![1, 2]);
        assert_eq!(ids(&r("ATC", &["M01A", "N02"]).unwrap()), vec![2, 3, 5]);
        // A source code brings the standard concepts it maps to.
        assert_eq!(ids(&r("ICD10", &["X1"]).unwrap()), vec![2, 3, 4]);
        let e = r("ATC", &["M99"]).unwrap_err().to_string();
        assert!(
            e.contains("ATC code 'M99' is not in the store's vocabulary"),
            "{e}"
        );
        let e = r("SNOMED", &["1"]).unwrap_err().to_string();
        assert!(e.contains("no vocabulary_id 'SNOMED'"), "{e}");
    }

    #[test]
    fn membership_is_a_probe_per_row() {
        let f = InConceptSet::new(Arc::new(graph()));
        let set = f.set("ATC".into(), vec!["M01A".into()]).unwrap();
        let probe = Probe::set(&set);
        let got: Vec<bool> = [1, 2, 3, 4, 5, -1]
            .iter()
            .map(|&c| probe.contains(c))
            .collect();
        assert_eq!(got, vec![false, true, true, false, false, false]);
    }
}
