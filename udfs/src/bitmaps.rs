//! Cohort sets as 32-bit roaring bitmaps in the portable serialization
//! (readable by CRoaring, Java Roaring and pg_roaringbitmap). Names follow
//! pg_roaringbitmap.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, Int64Array, ListArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, Documentation, EmitTo, GroupsAccumulator,
    ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use roaring::RoaringBitmap;

use crate::docs;

/// Serializes a bitmap in the portable format.
pub fn to_bytes(b: &RoaringBitmap) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.serialized_size());
    b.serialize_into(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// Reads a bitmap in the portable format.
pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<RoaringBitmap> {
    RoaringBitmap::deserialize_from(bytes)
        .map_err(|_| exec_datafusion_err!("{name}: the argument is not a roaring bitmap"))
}

fn person(name: &str, v: i64) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| exec_datafusion_err!("{name}: person_id must be between 0 and 4294967295"))
}

fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::Null
    )
}

fn binary_args(name: &str, args: &[DataType], n: usize) -> Result<Vec<DataType>> {
    if args.len() != n {
        return plan_err!("{name} takes {n} bitmap argument(s), got {}", args.len());
    }
    if let Some(t) = args.iter().find(|t| !is_binary(t)) {
        return plan_err!("{name}: expected a bitmap (BYTEA), got {t}");
    }
    Ok(vec![DataType::Binary; n])
}

fn doc(description: &str, syntax: &str, args: &[(&str, &str)], example: &str) -> Documentation {
    let mut b = Documentation::builder(docs::COHORTS, description.to_owned(), syntax.to_owned());
    for (n, d) in args {
        b = b.with_argument(*n, *d);
    }
    b.with_sql_example(example.to_owned()).build()
}

/// The bitmaps of a binary argument, row by row (None for NULL).
fn bitmaps(name: &str, a: &ArrayRef) -> Result<Vec<Option<RoaringBitmap>>> {
    let a = a.as_binary::<i32>();
    (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                Ok(None)
            } else {
                from_bytes(name, a.value(i)).map(Some)
            }
        })
        .collect()
}

fn finish(all_scalar: bool, out: ArrayRef) -> Result<ColumnarValue> {
    if all_scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}

/// Set operations on two bitmaps.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RbSetOp {
    name: &'static str,
    signature: Signature,
}

impl RbSetOp {
    /// `rb_and`, `rb_or`, `rb_andnot` or `rb_xor`.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn apply(&self, a: RoaringBitmap, b: &RoaringBitmap) -> RoaringBitmap {
        match self.name {
            "rb_and" => a & b,
            "rb_or" => a | b,
            "rb_andnot" => a - b,
            _ => a ^ b,
        }
    }
}

impl ScalarUDFImpl for RbSetOp {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        binary_args(self.name, args, 2)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (a, b) = (
            bitmaps(self.name, &arrays[0])?,
            bitmaps(self.name, &arrays[1])?,
        );
        let mut out = BinaryBuilder::new();
        for (a, b) in a.into_iter().zip(b) {
            match (a, b) {
                (Some(a), Some(b)) => out.append_value(to_bytes(&self.apply(a, &b))),
                _ => out.append_null(),
            }
        }
        finish(all_scalar, Arc::new(out.finish()))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOCS: OnceLock<Vec<(&str, Documentation)>> = OnceLock::new();
        let docs = DOCS.get_or_init(|| {
            [("rb_and", "intersection", "persons in both"), ("rb_or", "union", "persons in either"), ("rb_andnot", "difference", "persons in a but not in b"), ("rb_xor", "symmetric difference", "persons in exactly one")]
                .into_iter()
                .map(|(n, what, who)| {
                    (n, doc(
                        &format!("The {what} of two cohort bitmaps: {who}."),
                        &format!("{n}(a, b)"),
                        &[("a", "A bitmap (BYTEA)."), ("b", "A bitmap (BYTEA).")],
                        &format!("SELECT rb_cardinality({n}(cohort_bitmap('diabetes'), cohort_bitmap('statin_users')))"),
                    ))
                })
                .collect()
        });
        docs.iter().find(|(n, _)| *n == self.name).map(|(_, d)| d)
    }
}

/// `rb_cardinality(b)`, `rb_contains(b, person_id)`, `rb_to_array(b)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RbRead {
    name: &'static str,
    signature: Signature,
}

impl RbRead {
    /// `rb_cardinality`, `rb_contains` or `rb_to_array`.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for RbRead {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if self.name == "rb_contains" {
            if args.len() != 2
                || !is_binary(&args[0])
                || !(args[1].is_integer() || args[1] == DataType::Null)
            {
                return plan_err!("rb_contains takes (bitmap BYTEA, person_id BIGINT)");
            }
            return Ok(vec![DataType::Binary, DataType::Int64]);
        }
        binary_args(self.name, args, 1)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(match self.name {
            "rb_cardinality" => DataType::Int64,
            "rb_contains" => DataType::Boolean,
            _ => DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let maps = bitmaps(self.name, &arrays[0])?;
        let out: ArrayRef = match self.name {
            "rb_cardinality" => Arc::new(
                maps.iter()
                    .map(|m| m.as_ref().map(|m| m.len() as i64))
                    .collect::<Int64Array>(),
            ),
            "rb_contains" => {
                let ids = arrays[1].as_primitive::<Int64Type>();
                let v: BooleanArray = maps
                    .iter()
                    .enumerate()
                    .map(|(i, m)| match (m, ids.is_valid(i)) {
                        (Some(m), true) => {
                            Some(u32::try_from(ids.value(i)).is_ok_and(|id| m.contains(id)))
                        }
                        _ => None,
                    })
                    .collect();
                Arc::new(v)
            }
            _ => {
                let mut values = Vec::new();
                let mut offsets = vec![0i32];
                let mut nulls = Vec::new();
                for m in &maps {
                    if let Some(m) = m {
                        values.extend(m.iter().map(i64::from));
                    }
                    nulls.push(m.is_some());
                    offsets.push(values.len() as i32);
                }
                Arc::new(ListArray::new(
                    Arc::new(Field::new("item", DataType::Int64, true)),
                    OffsetBuffer::new(offsets.into()),
                    Arc::new(Int64Array::from(values)),
                    Some(nulls.into()),
                ))
            }
        };
        finish(all_scalar, out)
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOCS: OnceLock<Vec<(&str, Documentation)>> = OnceLock::new();
        let docs = DOCS.get_or_init(|| {
            vec![
                ("rb_cardinality", doc("The number of persons in a cohort bitmap.", "rb_cardinality(b)", &[("b", "A bitmap (BYTEA).")], "SELECT rb_cardinality(rb_build_agg(person_id)) FROM ndb.person")),
                ("rb_contains", doc("True when the bitmap holds person_id.", "rb_contains(b, person_id)", &[("b", "A bitmap (BYTEA)."), ("person_id", "The engine's person number.")], "SELECT count(*) FROM ndb.drug_exposure WHERE rb_contains(cohort_bitmap('diabetes'), person_id)")),
                ("rb_to_array", doc("The person_id values of a bitmap, ascending. Row-level roles only.", "rb_to_array(b)", &[("b", "A bitmap (BYTEA).")], "SELECT unnest(rb_to_array(cohort_bitmap('diabetes')))")),
            ]
        });
        docs.iter().find(|(n, _)| *n == self.name).map(|(_, d)| d)
    }
}

/// The bitmap aggregates: `rb_build_agg(person_id)`, `rb_or_agg(b)`, `rb_and_agg(b)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RbAgg {
    name: &'static str,
    signature: Signature,
}

impl RbAgg {
    /// `rb_build_agg`, `rb_or_agg` or `rb_and_agg`.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for RbAgg {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if self.name == "rb_build_agg" {
            if args.len() != 1 || !(args[0].is_integer() || args[0] == DataType::Null) {
                return plan_err!("rb_build_agg takes one integer argument (person_id)");
            }
            return Ok(vec![DataType::Int64]);
        }
        binary_args(self.name, args, 1)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }
    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(RbAccumulator {
            groups: RbGroups::new(self.name),
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[bitmap]", args.name),
            DataType::Binary,
            true,
        ))])
    }
    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }
    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(RbGroups::new(self.name)))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOCS: OnceLock<Vec<(&str, Documentation)>> = OnceLock::new();
        let docs = DOCS.get_or_init(|| {
            vec![
                ("rb_build_agg", doc("The cohort bitmap of the person_id values of the group.", "rb_build_agg(person_id)", &[("person_id", "The engine's person number.")], "SELECT condition_concept_id, rb_build_agg(person_id) FROM ndb.condition_occurrence GROUP BY 1")),
                ("rb_or_agg", doc("The union of the bitmaps of the group.", "rb_or_agg(b)", &[("b", "A bitmap (BYTEA).")], "SELECT rb_cardinality(rb_or_agg(b)) FROM per_concept")),
                ("rb_and_agg", doc("The intersection of the bitmaps of the group.", "rb_and_agg(b)", &[("b", "A bitmap (BYTEA).")], "SELECT rb_cardinality(rb_and_agg(b)) FROM criteria")),
            ]
        });
        docs.iter().find(|(n, _)| *n == self.name).map(|(_, d)| d)
    }
}

/// One bitmap per group.
#[derive(Debug)]
struct RbGroups {
    name: &'static str,
    maps: Vec<Option<RoaringBitmap>>,
}

impl RbGroups {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            maps: Vec::new(),
        }
    }

    fn combine(&mut self, g: usize, m: RoaringBitmap) {
        let slot = &mut self.maps[g];
        *slot = Some(match slot.take() {
            None => m,
            Some(cur) if self.name == "rb_and_agg" => cur & m,
            Some(cur) => cur | m,
        });
    }

    fn emit(&mut self, emit_to: EmitTo) -> ArrayRef {
        let maps = emit_to.take_needed(&mut self.maps);
        let mut out = BinaryBuilder::new();
        for m in maps {
            // An empty group still has a (empty) set, except for AND over no bitmap.
            match m {
                Some(m) => out.append_value(to_bytes(&m)),
                None if self.name == "rb_and_agg" => out.append_null(),
                None => out.append_value(to_bytes(&RoaringBitmap::new())),
            }
        }
        Arc::new(out.finish())
    }

    fn add(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total: usize,
        merging: bool,
    ) -> Result<()> {
        if self.maps.len() < total {
            self.maps.resize(total, None);
        }
        let skip = |i: usize| filter.is_some_and(|f| !f.is_valid(i) || !f.value(i));
        if self.name == "rb_build_agg" && !merging {
            let ids = values[0].as_primitive::<Int64Type>();
            for (i, &g) in groups.iter().enumerate() {
                if ids.is_null(i) || skip(i) {
                    continue;
                }
                let id = person(self.name, ids.value(i))?;
                self.maps[g]
                    .get_or_insert_with(RoaringBitmap::new)
                    .insert(id);
            }
            return Ok(());
        }
        let bins: &BinaryArray = values[0].as_binary::<i32>();
        for (i, &g) in groups.iter().enumerate() {
            if bins.is_null(i) || skip(i) {
                continue;
            }
            let m = from_bytes(self.name, bins.value(i))?;
            if merging && self.name == "rb_build_agg" {
                self.maps[g]
                    .get_or_insert_with(RoaringBitmap::new)
                    .extend(m.iter());
            } else {
                self.combine(g, m);
            }
        }
        Ok(())
    }
}

impl GroupsAccumulator for RbGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total: usize,
    ) -> Result<()> {
        self.add(values, groups, filter, total, false)
    }
    fn merge_batch(&mut self, values: &[ArrayRef], groups: &[usize], total: usize) -> Result<()> {
        self.add(values, groups, None, total, true)
    }
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut each = RbGroups::new(self.name);
        let n = values[0].len();
        let groups: Vec<usize> = (0..n).collect();
        each.add(values, &groups, filter, n, false)?;
        each.state(EmitTo::All)
    }
    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.emit(emit_to))
    }
    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let maps = emit_to.take_needed(&mut self.maps);
        let mut out = BinaryBuilder::new();
        for m in maps {
            match m {
                Some(m) => out.append_value(to_bytes(&m)),
                None => out.append_null(),
            }
        }
        Ok(vec![Arc::new(out.finish())])
    }
    fn size(&self) -> usize {
        self.maps
            .iter()
            .map(|m| m.as_ref().map_or(8, |m| m.serialized_size() + 8))
            .sum()
    }
}

/// The single-group form.
#[derive(Debug)]
struct RbAccumulator {
    groups: RbGroups,
}

impl Accumulator for RbAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values[0].len();
        self.groups.add(values, &vec![0; n], None, 1, false)
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let n = states[0].len();
        self.groups.add(states, &vec![0; n], None, 1, true)
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let m = self.groups.maps.first().cloned().flatten();
        Ok(vec![ScalarValue::Binary(m.map(|m| to_bytes(&m)))])
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.groups.maps.is_empty() {
            self.groups.maps.push(None);
        }
        let saved = self.groups.maps.clone();
        let out = self.groups.emit(EmitTo::All);
        self.groups.maps = saved;
        ScalarValue::try_from_array(&out, 0)
    }
    fn size(&self) -> usize {
        self.groups.size() + size_of_val(self)
    }
}

/// Checks that a person number fits a bitmap.
pub fn check_person(name: &str, v: i64) -> Result<u32> {
    if v < 0 {
        return exec_err!("{name}: person_id must not be negative");
    }
    person(name, v)
}

/// Disclosure classes of the bitmap functions: person sets stay inside the
/// query; `rb_to_array` would list persons.
pub const DISCLOSURE: &[(&str, crate::Disclosure)] = &[
    ("rb_build_agg", crate::Disclosure::PersonSet),
    ("rb_or_agg", crate::Disclosure::PersonSet),
    ("rb_and_agg", crate::Disclosure::PersonSet),
    ("rb_and", crate::Disclosure::PersonSet),
    ("rb_or", crate::Disclosure::PersonSet),
    ("rb_andnot", crate::Disclosure::PersonSet),
    ("rb_xor", crate::Disclosure::PersonSet),
    ("rb_cardinality", crate::Disclosure::PersonSet),
    ("rb_contains", crate::Disclosure::PersonSet),
    (
        "rb_to_array",
        crate::Disclosure::Refused("lists the persons of a set"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_format_matches_the_specification() {
        // {1, 2, 3}: cookie 12346, one container, key 0, cardinality-1 2, offset 16, values.
        let expected: Vec<u8> = vec![
            0x3A, 0x30, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 16, 0, 0, 0, 1, 0, 2, 0, 3, 0,
        ];
        let b: RoaringBitmap = [1u32, 2, 3].into_iter().collect();
        assert_eq!(to_bytes(&b), expected);
        assert_eq!(from_bytes("t", &expected).unwrap(), b);
        assert!(from_bytes("t", b"nonsense").is_err());
    }
}
