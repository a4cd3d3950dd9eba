//! A project's prepared dataset: the store's tables in its scope, as views
//! (no copy) that keep the scope's columns, rows of its period and persons
//! of its population, and show each person under the project's own
//! pseudonym.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::{Column, Result as DfResult, ScalarValue, exec_err};
use datafusion::datasource::ViewTable;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility, lit,
};
use datafusion::prelude::SessionContext;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use tsunagu_catalog::Store;

use super::{EngineError, Result};

/// What a project may see of the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    /// `schema.table` or `schema.*`; the vocabulary is always visible.
    pub tables: Vec<String>,
    /// Per `schema.table`, the only columns shown (`person_id` always is).
    #[serde(default)]
    pub columns: BTreeMap<String, Vec<String>>,
    /// Only events from this date…
    #[serde(default, with = "optional_ymd")]
    pub period_start: Option<NaiveDate>,
    /// …to this date (inclusive).
    #[serde(default, with = "optional_ymd")]
    pub period_end: Option<NaiveDate>,
    /// A steward's query returning the `person_id`s of the population.
    #[serde(default)]
    pub population: Option<String>,
}

mod optional_ymd {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&d.format("%Y-%m-%d").to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(t) => super::super::parse_date(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Schemas every project sees whole: reference data.
const ALWAYS: [&str; 1] = [tsunagu_catalog::VOCAB_SCHEMA];

impl Scope {
    /// Whether the scope holds `schema.table`.
    pub fn holds(&self, schema: &str, table: &str) -> bool {
        ALWAYS.contains(&schema)
            || self
                .tables
                .iter()
                .any(|t| t == &format!("{schema}.{table}") || t == &format!("{schema}.*"))
    }

    /// Checks the scope against the store: every table and column exists.
    pub fn check(&self, store: &Store) -> Result<()> {
        for t in &self.tables {
            let Some((schema, table)) = t.split_once('.') else {
                return Err(EngineError::Unsupported(format!(
                    "scope: {t:?} is not schema.table"
                )));
            };
            let found = store
                .shown_tables()
                .iter()
                .any(|s| s.schema == schema && (table == "*" || s.name == table));
            if !found {
                return Err(EngineError::Unsupported(format!(
                    "scope: the store has no table {t}"
                )));
            }
        }
        for (t, columns) in &self.columns {
            let shown = store
                .shown_tables()
                .iter()
                .find(|s| format!("{}.{}", s.schema, s.name) == *t)
                .ok_or_else(|| {
                    EngineError::Unsupported(format!("scope: the store has no table {t}"))
                })?;
            for c in columns {
                if !shown.plan.schema().fields().iter().any(|f| f.name() == c) {
                    return Err(EngineError::Unsupported(format!(
                        "scope: table {t} has no column {c}"
                    )));
                }
            }
        }
        if let (Some(a), Some(b)) = (self.period_start, self.period_end)
            && a > b
        {
            return Err(EngineError::Unsupported(
                "scope: the period ends before it starts".into(),
            ));
        }
        Ok(())
    }
}

/// Registers the project's dataset as catalog `catalog` of `ctx`, replacing
/// the store's.
pub(crate) fn register(
    ctx: &SessionContext,
    catalog: &str,
    store: &Store,
    scope: &Scope,
    key: [u8; 32],
    population: Option<Arc<RoaringBitmap>>,
) -> Result<()> {
    let pseudonym = ScalarUDF::new_from_impl(Pseudonym::new(key));
    let population = population.map(|p| ScalarUDF::new_from_impl(InPopulation::new(p)));
    let provider = MemoryCatalogProvider::new();
    let mut schemas: Vec<String> = store
        .shown_tables()
        .iter()
        .map(|t| t.schema.clone())
        .collect();
    schemas.push("public".into());
    schemas.sort();
    schemas.dedup();
    for name in schemas {
        let schema = MemorySchemaProvider::new();
        for t in store
            .shown_tables()
            .iter()
            .filter(|t| t.schema == name && scope.holds(&t.schema, &t.name))
        {
            let full = format!("{}.{}", t.schema, t.name);
            let plan_schema = t.plan.schema().clone();
            let column = |i: usize| Expr::Column(Column::from(plan_schema.qualified_field(i)));
            let position = |n: &str| plan_schema.fields().iter().position(|f| f.name() == n);
            let mut b = LogicalPlanBuilder::from(t.plan.clone());
            let person = position(crate::privacy::PERSON_ID).filter(|_| t.person_level);
            if let (Some(p), Some(pop)) = (person, &population) {
                b = b.filter(pop.call(vec![column(p)]))?;
            }
            if let Some(period) = period_filter(&plan_schema, scope, &column) {
                b = b.filter(period)?;
            }
            let keep = scope.columns.get(&full);
            let mut exprs = Vec::new();
            for (i, f) in plan_schema.fields().iter().enumerate() {
                let n = f.name();
                if Some(i) == person {
                    exprs.push(pseudonym.call(vec![column(i)]).alias(n));
                } else if n == "person_key" || keep.is_some_and(|k| !k.iter().any(|c| c == n)) {
                    continue;
                } else {
                    exprs.push(column(i));
                }
            }
            let plan = b.project(exprs)?.build()?;
            schema.register_table(t.name.clone(), Arc::new(ViewTable::new(plan, None)))?;
        }
        provider.register_schema(&name, Arc::new(schema))?;
    }
    ctx.register_catalog(catalog, Arc::new(provider));
    Ok(())
}

/// Rows of the period: events starting in it, or spans overlapping it.
fn period_filter(
    schema: &datafusion::common::DFSchema,
    scope: &Scope,
    column: &dyn Fn(usize) -> Expr,
) -> Option<Expr> {
    if scope.period_start.is_none() && scope.period_end.is_none() {
        return None;
    }
    let dates: Vec<(usize, &str)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.data_type() == &DataType::Date32)
        .map(|(i, f)| (i, f.name().as_str()))
        .collect();
    // The event's date: a `*_start_date`, else a `*_date`, else the first
    // date column (`service_month`). A table without one is whole.
    let start = dates
        .iter()
        .find(|(_, n)| n.ends_with("_start_date"))
        .or_else(|| dates.iter().find(|(_, n)| n.ends_with("_date")))
        .or_else(|| dates.first())?
        .0;
    let end = dates
        .iter()
        .find(|(_, n)| n.ends_with("_end_date"))
        .map(|d| d.0);
    let date = |d: NaiveDate| {
        let days = d
            .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default())
            .num_days() as i32;
        lit(ScalarValue::Date32(Some(days)))
    };
    let mut cond: Option<Expr> = None;
    let mut and = |e: Expr| {
        cond = Some(match cond.take() {
            Some(c) => c.and(e),
            None => e,
        })
    };
    if let Some(pe) = scope.period_end {
        and(column(start).lt_eq(date(pe)));
    }
    if let Some(ps) = scope.period_start {
        match end {
            Some(end) => and(column(end).gt_eq(date(ps)).or(column(end).is_null())),
            None => and(column(start).gt_eq(date(ps))),
        }
    }
    cond
}

/// The project's pseudonym of a store `person_id`: a keyed permutation, so
/// joins within the project work and ids of two projects do not meet.
/// Ids below 2³² stay below 2³² (person sets are 32-bit bitmaps).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Pseudonym {
    keys: [u64; 8],
    signature: Signature,
}

impl Pseudonym {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        let mut keys = [0u64; 8];
        for (i, k) in keys.iter_mut().enumerate() {
            let w = u64::from_le_bytes(
                key[(i % 4) * 8..(i % 4) * 8 + 8]
                    .try_into()
                    .unwrap_or_default(),
            );
            *k = mix(w ^ (i as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        }
        Pseudonym {
            keys,
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        }
    }

    /// The pseudonym of `id`.
    pub(crate) fn of(&self, id: i64) -> i64 {
        if (0..1i64 << 32).contains(&id) {
            return self.permute32(id as u32) as i64;
        }
        // Elsewhere: a 64-bit permutation, walked until it leaves [0, 2³²).
        let mut v = id as u64;
        loop {
            v = self.permute64(v);
            if !(0..1i64 << 32).contains(&(v as i64)) {
                return v as i64;
            }
        }
    }

    fn permute32(&self, v: u32) -> u32 {
        let (mut l, mut r) = ((v >> 16) as u16, v as u16);
        for k in &self.keys[..6] {
            let f = (mix(k ^ r as u64) & 0xffff) as u16;
            (l, r) = (r, l ^ f);
        }
        ((l as u32) << 16) | r as u32
    }

    fn permute64(&self, v: u64) -> u64 {
        let (mut l, mut r) = ((v >> 32) as u32, v as u32);
        for k in &self.keys[2..] {
            let f = (mix(k ^ r as u64) & 0xffff_ffff) as u32;
            (l, r) = (r, l ^ f);
        }
        ((l as u64) << 32) | r as u64
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl ScalarUDFImpl for Pseudonym {
    fn name(&self) -> &str {
        "tsunagu_pseudonym"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let a = args.args[0].to_array(args.number_rows)?;
        let Some(ids) = a.as_primitive_opt::<Int64Type>() else {
            return exec_err!("tsunagu_pseudonym: person_id must be BIGINT");
        };
        let out: Int64Array = ids.iter().map(|v| v.map(|v| self.of(v))).collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

/// Whether a store `person_id` is in the project's population.
#[derive(Debug)]
pub(crate) struct InPopulation {
    persons: Arc<RoaringBitmap>,
    signature: Signature,
}

impl PartialEq for InPopulation {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.persons, &other.persons)
    }
}
impl Eq for InPopulation {}
impl std::hash::Hash for InPopulation {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.persons) as usize).hash(state)
    }
}

impl InPopulation {
    fn new(persons: Arc<RoaringBitmap>) -> Self {
        InPopulation {
            persons,
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for InPopulation {
    fn name(&self) -> &str {
        "tsunagu_in_population"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let a = args.args[0].to_array(args.number_rows)?;
        let Some(ids) = a.as_primitive_opt::<Int64Type>() else {
            return exec_err!("tsunagu_in_population: person_id must be BIGINT");
        };
        let out: BooleanArray = (0..ids.len())
            .map(|i| {
                Some(
                    ids.is_valid(i)
                        && u32::try_from(ids.value(i)).is_ok_and(|p| self.persons.contains(p)),
                )
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_a_permutation_that_differs_by_key() {
        let a = Pseudonym::new([1; 32]);
        let b = Pseudonym::new([2; 32]);
        let ids: Vec<i64> = (0..100_000).collect();
        let pa: std::collections::HashSet<i64> = ids.iter().map(|&i| a.of(i)).collect();
        assert_eq!(pa.len(), ids.len(), "no two persons share a pseudonym");
        assert!(pa.iter().all(|p| (0..1i64 << 32).contains(p)));
        // The same person in two projects: equal only by chance (2^-32).
        let same = ids.iter().filter(|&&i| a.of(i) == b.of(i)).count();
        assert!(same <= 2, "{same}");
        // Not order-preserving: ids do not survive as ranks.
        let kept = ids.windows(2).filter(|w| a.of(w[0]) < a.of(w[1])).count();
        assert!((40_000..60_000).contains(&kept), "{kept}");
        // Large and negative ids stay out of the 32-bit range, one to one.
        for id in [1i64 << 40, -5, i64::MAX] {
            let p = a.of(id);
            assert!(!(0..1i64 << 32).contains(&p));
            assert_ne!(p, id);
        }
    }
}
