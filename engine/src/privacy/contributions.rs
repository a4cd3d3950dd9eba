//! `tsunagu_contributions(contributes, hash, primary, c_0, ..., c_m)`: what
//! the release of one number needs to know of a group's per-person
//! contributions, gathered in one pass over the persons.
//!
//! Over the persons for whom `contributes` is true: how many they are, the
//! XOR of their keyed hashes (the seed of the set), `Σ|c|` and `Σc²` of the
//! primary moment (the effective number of contributors), and for each
//! moment its total, largest and smallest contribution and how many persons
//! gave one. The value is a struct with these fields in this order:
//! `n, seed, l1, l2`, then `total_j, hi_j, lo_j, seen_j` for every moment.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// Arguments before the moments: contributes, hash, primary.
const LEADING: usize = 3;
/// Fields before the moments: n, seed, l1, l2.
pub(super) const HEAD: usize = 4;
/// Fields per moment: total, hi, lo, seen.
pub(super) const PER_MOMENT: usize = 4;

/// The aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct Contributions {
    signature: Signature,
}

impl Contributions {
    pub(crate) fn new() -> Self {
        Contributions {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

fn fields(moments: usize) -> Fields {
    let mut f = vec![
        Field::new("n", DataType::Int64, false),
        Field::new("seed", DataType::Int64, false),
        Field::new("l1", DataType::Float64, false),
        Field::new("l2", DataType::Float64, false),
    ];
    for j in 0..moments {
        f.push(Field::new(format!("total{j}"), DataType::Float64, false));
        f.push(Field::new(format!("hi{j}"), DataType::Float64, false));
        f.push(Field::new(format!("lo{j}"), DataType::Float64, false));
        f.push(Field::new(format!("seen{j}"), DataType::Int64, false));
    }
    Fields::from(f)
}

fn moments_of(arguments: usize) -> Result<usize> {
    match arguments.checked_sub(LEADING) {
        Some(m) => Ok(m),
        None => exec_err!("tsunagu_contributions: expected at least {LEADING} arguments"),
    }
}

impl AggregateUDFImpl for Contributions {
    fn name(&self) -> &str {
        "tsunagu_contributions"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(fields(moments_of(args.len())?)))
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Single(Groups::new(moments_of(args.exprs.len())?))))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(fields(moments_of(args.input_fields.len())?)
            .iter()
            .map(|f| {
                Arc::new(Field::new(
                    format_state_name(args.name, f.name()),
                    f.data_type().clone(),
                    false,
                ))
            })
            .collect())
    }
    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }
    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups::new(moments_of(args.exprs.len())?)))
    }
}

/// The statistics of every group; moments flattened group by group.
#[derive(Debug)]
struct Groups {
    moments: usize,
    n: Vec<i64>,
    seed: Vec<i64>,
    l1: Vec<f64>,
    l2: Vec<f64>,
    total: Vec<f64>,
    hi: Vec<f64>,
    lo: Vec<f64>,
    seen: Vec<i64>,
}

fn floats(a: &ArrayRef) -> Result<&Float64Array> {
    match a.as_primitive_opt::<Float64Type>() {
        Some(a) => Ok(a),
        None => exec_err!(
            "tsunagu_contributions: expected Float64, got {}",
            a.data_type()
        ),
    }
}

fn ints(a: &ArrayRef) -> Result<&Int64Array> {
    match a.as_primitive_opt::<Int64Type>() {
        Some(a) => Ok(a),
        None => exec_err!(
            "tsunagu_contributions: expected Int64, got {}",
            a.data_type()
        ),
    }
}

fn bools(a: &ArrayRef) -> Result<&BooleanArray> {
    match a.as_boolean_opt() {
        Some(a) => Ok(a),
        None => exec_err!(
            "tsunagu_contributions: expected Boolean, got {}",
            a.data_type()
        ),
    }
}

/// The first `n` groups' entries of `v` (`width` per group), or all of them.
fn take<T>(v: &mut Vec<T>, emit: EmitTo, width: usize) -> Vec<T> {
    match emit {
        EmitTo::All => std::mem::take(v),
        EmitTo::First(n) => {
            let rest = v.split_off((n * width).min(v.len()));
            std::mem::replace(v, rest)
        }
    }
}

impl Groups {
    fn new(moments: usize) -> Self {
        Groups {
            moments,
            n: Vec::new(),
            seed: Vec::new(),
            l1: Vec::new(),
            l2: Vec::new(),
            total: Vec::new(),
            hi: Vec::new(),
            lo: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn resize(&mut self, groups: usize) {
        let m = self.moments;
        self.n.resize(groups, 0);
        self.seed.resize(groups, 0);
        self.l1.resize(groups, 0.0);
        self.l2.resize(groups, 0.0);
        self.total.resize(groups * m, 0.0);
        self.hi.resize(groups * m, f64::NEG_INFINITY);
        self.lo.resize(groups * m, f64::INFINITY);
        self.seen.resize(groups * m, 0);
    }

    /// The columns of the first groups (or all), removed from the state.
    fn emit(&mut self, emit: EmitTo) -> Vec<ArrayRef> {
        let m = self.moments;
        let n = take(&mut self.n, emit, 1);
        let groups = n.len();
        let seed = take(&mut self.seed, emit, 1);
        let l1 = take(&mut self.l1, emit, 1);
        let l2 = take(&mut self.l2, emit, 1);
        let total = take(&mut self.total, emit, m);
        let hi = take(&mut self.hi, emit, m);
        let lo = take(&mut self.lo, emit, m);
        let seen = take(&mut self.seen, emit, m);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(n)),
            Arc::new(Int64Array::from(seed)),
            Arc::new(Float64Array::from(l1)),
            Arc::new(Float64Array::from(l2)),
        ];
        let column = |v: &[f64], j: usize| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(
                (0..groups).map(|g| v[g * m + j]),
            ))
        };
        for j in 0..m {
            columns.push(column(&total, j));
            columns.push(column(&hi, j));
            columns.push(column(&lo, j));
            columns.push(Arc::new(Int64Array::from_iter_values(
                (0..groups).map(|g| seen[g * m + j]),
            )));
        }
        columns
    }

    fn size(&self) -> usize {
        (self.n.capacity() + self.seed.capacity() + self.seen.capacity()) * 8
            + (self.l1.capacity()
                + self.l2.capacity()
                + self.total.capacity()
                + self.hi.capacity()
                + self.lo.capacity())
                * 8
    }
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let m = self.moments;
        if values.len() != LEADING + m {
            return exec_err!("tsunagu_contributions: expected {} arguments", LEADING + m);
        }
        self.resize(total_num_groups);
        let contributes = bools(&values[0])?;
        let hash = ints(&values[1])?;
        let primary = ints(&values[2])?;
        let moments: Vec<&Float64Array> = values[LEADING..]
            .iter()
            .map(floats)
            .collect::<Result<_>>()?;
        for (row, &g) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row))
                || !contributes.is_valid(row)
                || !contributes.value(row)
            {
                continue;
            }
            self.n[g] += 1;
            if hash.is_valid(row) {
                self.seed[g] ^= hash.value(row);
            }
            let primary = if primary.is_valid(row) {
                primary.value(row)
            } else {
                -1
            };
            for (j, a) in moments.iter().enumerate() {
                if a.is_null(row) {
                    continue;
                }
                let v = a.value(row);
                let k = g * m + j;
                self.total[k] += v;
                self.hi[k] = self.hi[k].max(v);
                self.lo[k] = self.lo[k].min(v);
                self.seen[k] += 1;
                if j as i64 == primary {
                    self.l1[g] += v.abs();
                    self.l2[g] += v * v;
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let columns = self.emit(emit_to);
        Ok(Arc::new(StructArray::try_new(
            fields(self.moments),
            columns,
            None,
        )?))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(self.emit(emit_to))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let m = self.moments;
        if values.len() != HEAD + PER_MOMENT * m {
            return exec_err!("tsunagu_contributions: unexpected state");
        }
        self.resize(total_num_groups);
        let (n, seed) = (ints(&values[0])?, ints(&values[1])?);
        let (l1, l2) = (floats(&values[2])?, floats(&values[3])?);
        let mut moments = Vec::with_capacity(m);
        for j in 0..m {
            let at = HEAD + PER_MOMENT * j;
            moments.push((
                floats(&values[at])?,
                floats(&values[at + 1])?,
                floats(&values[at + 2])?,
                ints(&values[at + 3])?,
            ));
        }
        for (row, &g) in group_indices.iter().enumerate() {
            self.n[g] += n.value(row);
            self.seed[g] ^= seed.value(row);
            self.l1[g] += l1.value(row);
            self.l2[g] += l2.value(row);
            for (j, (total, hi, lo, seen)) in moments.iter().enumerate() {
                let k = g * m + j;
                self.total[k] += total.value(row);
                self.hi[k] = self.hi[k].max(hi.value(row));
                self.lo[k] = self.lo[k].min(lo.value(row));
                self.seen[k] += seen.value(row);
            }
        }
        Ok(())
    }

    /// Each row as the state of a group of its own (partial aggregation skipped).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let mut each = Groups::new(self.moments);
        let indices: Vec<usize> = (0..rows).collect();
        each.update_batch(values, &indices, opt_filter, rows)?;
        Ok(each.emit(EmitTo::All))
    }

    fn size(&self) -> usize {
        Groups::size(self)
    }
}

/// The aggregate without GROUP BY: one group.
#[derive(Debug)]
struct Single(Groups);

impl Single {
    fn scalars(&mut self) -> Result<Vec<ScalarValue>> {
        self.0.resize(1);
        let columns = self.0.emit(EmitTo::All);
        self.0.resize(1);
        columns
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0))
            .collect()
    }
}

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        self.0.update_batch(values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let m = self.0.moments;
        let columns: Vec<ArrayRef> = self
            .scalars()?
            .iter()
            .map(|s| s.to_array())
            .collect::<Result<_>>()?;
        Ok(ScalarValue::Struct(Arc::new(StructArray::try_new(
            fields(m),
            columns,
            None,
        )?)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.scalars()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |v| v.len());
        self.0.merge_batch(states, &vec![0; rows], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(a: &[ArrayRef], i: usize) -> Vec<f64> {
        let a = datafusion::arrow::compute::cast(&a[i], &DataType::Float64).unwrap();
        a.as_primitive::<Float64Type>().values().to_vec()
    }

    /// Persons (rows) in two groups, one not contributing; checked by hand.
    fn batch() -> (Vec<ArrayRef>, Vec<usize>) {
        let values: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::from(vec![true, true, false, true, true])),
            Arc::new(Int64Array::from(vec![1, 2, 4, 8, 16])),
            Arc::new(Int64Array::from(vec![1; 5])),
            Arc::new(Float64Array::from(vec![
                Some(1.0),
                Some(2.0),
                Some(9.0),
                None,
                Some(5.0),
            ])),
            Arc::new(Float64Array::from(vec![3.0, -4.0, 9.0, 1.0, 2.0])),
        ];
        (values, vec![0, 0, 0, 1, 1])
    }

    #[test]
    fn one_pass_gives_each_groups_statistics() {
        let (values, groups) = batch();
        let mut g = Groups::new(2);
        g.update_batch(&values, &groups, None, 2).unwrap();
        let s = g.emit(EmitTo::All);
        // n, seed: group 0 has persons 1 and 2; group 1 has 8 and 16.
        assert_eq!(column(&s, 0), vec![2.0, 2.0]);
        assert_eq!(column(&s, 1), vec![3.0, 24.0]);
        // Primary moment 1: |3|+|-4| = 7, 9+16 = 25; |1|+|2| = 3, 1+4 = 5.
        assert_eq!(column(&s, 2), vec![7.0, 3.0]);
        assert_eq!(column(&s, 3), vec![25.0, 5.0]);
        // Moment 0: totals 3 and 5 (a NULL skipped), hi, lo, seen.
        assert_eq!(column(&s, 4), vec![3.0, 5.0]);
        assert_eq!(column(&s, 5), vec![2.0, 5.0]);
        assert_eq!(column(&s, 6), vec![1.0, 5.0]);
        assert_eq!(column(&s, 7), vec![2.0, 1.0]);
        // Moment 1: totals -1 and 3, hi 3 and 2, lo -4 and 1.
        assert_eq!(column(&s, 8), vec![-1.0, 3.0]);
        assert_eq!(column(&s, 9), vec![3.0, 2.0]);
        assert_eq!(column(&s, 10), vec![-4.0, 1.0]);
    }

    #[test]
    fn merged_partial_states_equal_one_pass() {
        let (values, groups) = batch();
        let mut whole = Groups::new(2);
        whole.update_batch(&values, &groups, None, 2).unwrap();
        let whole = whole.emit(EmitTo::All);
        // Row by row as states, merged into the two groups.
        let each = Groups::new(2).convert_to_state(&values, None).unwrap();
        let mut merged = Groups::new(2);
        merged.merge_batch(&each, &groups, 2).unwrap();
        let merged = merged.emit(EmitTo::All);
        for i in 0..whole.len() {
            assert_eq!(column(&whole, i), column(&merged, i), "field {i}");
        }
        // The first group emitted alone leaves the second.
        let mut g = Groups::new(2);
        g.update_batch(&values, &groups, None, 2).unwrap();
        let first = g.emit(EmitTo::First(1));
        assert_eq!(column(&first, 0), vec![2.0]);
        assert_eq!(column(&g.emit(EmitTo::All), 1), vec![24.0]);
    }
}
