//! Episodes: a person's records merged into continuous spans, with the
//! exact OHDSI era semantics. Sort by start; a record joins the current
//! episode when `start <= running_max_end + gap_days`. An episode's
//! `gap_days` is its length minus the days its records cover, overlapping
//! or touching records merged first (day counts are `end - start`).

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Int64Array, ListArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, FieldRef, Fields, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{
    AccumulatorArgs, PartitionEvaluatorArgs, StateFieldsArgs, WindowUDFFieldArgs,
};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, PartitionEvaluator,
    Signature, Volatility, WindowUDFImpl,
};

use crate::docs;

/// One episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    pub start: i32,
    pub end: i32,
    pub records: i64,
    pub gap_days: i64,
}

/// Builds the episodes of one group of (start, end) records, in days.
///
/// An end before its start is treated as the start. Sorts `records` in place.
pub fn build(records: &mut [(i32, i32)], gap: i64) -> Vec<Episode> {
    for r in records.iter_mut() {
        r.1 = r.1.max(r.0);
    }
    records.sort_unstable();
    let mut out = Vec::new();
    let mut iter = records.iter();
    let Some(&(s0, e0)) = iter.next() else {
        return out;
    };
    let mut ep = Episode {
        start: s0,
        end: e0,
        records: 1,
        gap_days: 0,
    };
    let (mut sub_start, mut sub_end) = (s0, e0);
    let mut covered: i64 = 0;
    for &(s, e) in iter {
        if (s as i64) <= ep.end as i64 + gap {
            ep.records += 1;
            ep.end = ep.end.max(e);
            if s <= sub_end {
                sub_end = sub_end.max(e);
            } else {
                covered += (sub_end - sub_start) as i64;
                (sub_start, sub_end) = (s, e);
            }
        } else {
            covered += (sub_end - sub_start) as i64;
            ep.gap_days = (ep.end - ep.start) as i64 - covered;
            out.push(ep);
            ep = Episode {
                start: s,
                end: e,
                records: 1,
                gap_days: 0,
            };
            (sub_start, sub_end, covered) = (s, e, 0);
        }
    }
    covered += (sub_end - sub_start) as i64;
    ep.gap_days = (ep.end - ep.start) as i64 - covered;
    out.push(ep);
    out
}

/// The struct type of one episode.
pub fn episode_fields() -> Fields {
    Fields::from(vec![
        Field::new("episode_start", DataType::Date32, false),
        Field::new("episode_end", DataType::Date32, false),
        Field::new("record_count", DataType::Int64, false),
        Field::new("gap_days", DataType::Int64, false),
    ])
}

fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(episode_fields()),
        true,
    )))
}

fn signature() -> Signature {
    Signature::user_defined(Volatility::Immutable)
}

fn coerce(name: &str, args: &[DataType]) -> Result<Vec<DataType>> {
    if args.len() != 3 {
        return plan_err!(
            "{name} takes (start_date, end_date, gap_days), got {} arguments",
            args.len()
        );
    }
    for (i, t) in args[..2].iter().enumerate() {
        if !matches!(
            t,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Null
        ) {
            return plan_err!("{name}: argument {} must be a DATE, got {t}", i + 1);
        }
    }
    if !(args[2].is_integer() || args[2] == DataType::Null) {
        return plan_err!("{name}: gap_days must be an integer, got {}", args[2]);
    }
    Ok(vec![DataType::Date32, DataType::Date32, DataType::Int64])
}

/// Reads (start, end) pairs and the gap from argument arrays; rows with a NULL start are skipped.
fn records(values: &[ArrayRef]) -> (Vec<(usize, i32, i32)>, i64) {
    let starts = values[0].as_primitive::<Date32Type>();
    let ends = values[1].as_primitive::<Date32Type>();
    let gaps = values[2].as_primitive::<Int64Type>();
    let gap = (0..gaps.len())
        .find(|&i| gaps.is_valid(i))
        .map(|i| gaps.value(i))
        .unwrap_or(0);
    let mut out = Vec::with_capacity(starts.len());
    for i in 0..starts.len() {
        if starts.is_null(i) {
            continue;
        }
        let s = starts.value(i);
        let e = if ends.is_null(i) { s } else { ends.value(i) };
        out.push((i, s, e));
    }
    (out, gap)
}

/// `episode_number(start, end, gap_days) OVER (PARTITION BY ... ORDER BY start)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct EpisodeNumber {
    signature: Signature,
}

impl Default for EpisodeNumber {
    fn default() -> Self {
        Self {
            signature: signature(),
        }
    }
}

impl WindowUDFImpl for EpisodeNumber {
    fn name(&self) -> &str {
        "episode_number"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        coerce(self.name(), args)
    }
    fn partition_evaluator(
        &self,
        _: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(EpisodeNumberEvaluator))
    }
    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(args.name(), DataType::Int64, true)))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                docs::EPISODES,
                "Numbers the episode (1, 2, 3, ...) each record of the window partition falls in. Records are taken in start order; a record joins the current episode when its start is at most gap_days after the latest end so far (the OHDSI persistence window: a 30-day gap merges, 31 does not). A NULL end counts as the start; an end before its start is treated as the start; a NULL start gives NULL.",
                "episode_number(start_date, end_date, gap_days) OVER (PARTITION BY person_id, concept ORDER BY start_date)",
            )
            .with_argument("start_date", "DATE: start of the record.")
            .with_argument("end_date", "DATE: end of the record (inclusive).")
            .with_argument("gap_days", "Integer: the largest gap in days that still merges.")
            .with_sql_example("SELECT person_id, drug_exposure_start_date,\n       episode_number(drug_exposure_start_date, drug_exposure_end_date, 30)\n         OVER (PARTITION BY person_id, drug_concept_id ORDER BY drug_exposure_start_date) AS episode\n  FROM ndb.drug_exposure")
            .with_related_udf("episodes")
            .build()
        }))
    }
}

#[derive(Debug)]
struct EpisodeNumberEvaluator;

impl PartitionEvaluator for EpisodeNumberEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let (mut recs, gap) = records(values);
        // Stable order by (start, end); the partition may come in any order.
        recs.sort_unstable_by_key(|&(i, s, e)| (s, e.max(s), i));
        let mut out: Vec<Option<i64>> = vec![None; num_rows];
        let mut number = 0i64;
        let mut max_end = i64::MIN;
        for (i, s, e) in recs {
            let e = e.max(s) as i64;
            if number == 0 || s as i64 > max_end + gap {
                number += 1;
                max_end = e;
            } else {
                max_end = max_end.max(e);
            }
            out[i] = Some(number);
        }
        Ok(Arc::new(Int64Array::from(out)))
    }
}

/// `episodes(start, end, gap_days)`: the episodes of a group as a list of structs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Episodes {
    signature: Signature,
}

impl Default for Episodes {
    fn default() -> Self {
        Self {
            signature: signature(),
        }
    }
}

impl AggregateUDFImpl for Episodes {
    fn name(&self) -> &str {
        "episodes"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        coerce(self.name(), args)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(list_type())
    }
    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(EpisodesAccumulator::default()))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Date32, true)));
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[starts]", args.name),
                list.clone(),
                true,
            )),
            Arc::new(Field::new(format!("{}[ends]", args.name), list, true)),
            Arc::new(Field::new(
                format!("{}[gap]", args.name),
                DataType::Int64,
                true,
            )),
        ])
    }
    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }
    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(EpisodesGroups::default()))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                docs::EPISODES,
                "The episodes of the group as LIST<STRUCT<episode_start DATE, episode_end DATE, record_count BIGINT, gap_days BIGINT>>, with the OHDSI era semantics: records sorted by start; a record joins the current episode when start <= running_max_end + gap_days. gap_days of an episode is episode_end - episode_start minus the days covered by its records, overlapping or touching records merged first (OHDSI non-stockpile). Use with GROUP BY and unnest.",
                "episodes(start_date, end_date, gap_days)",
            )
            .with_argument("start_date", "DATE: start of the record.")
            .with_argument("end_date", "DATE: end of the record (inclusive); NULL counts as the start.")
            .with_argument("gap_days", "Integer: the largest gap in days that still merges (30 for OHDSI eras).")
            .with_sql_example("SELECT person_id, drug_concept_id, unnest(episodes(drug_exposure_start_date, drug_exposure_end_date, 30)) AS era\n  FROM ndb.drug_exposure GROUP BY person_id, drug_concept_id")
            .with_related_udf("episode_number")
            .build()
        }))
    }
}

/// Builds the output list array for groups of records.
fn to_list(groups: impl Iterator<Item = (Vec<(i32, i32)>, i64)>) -> ArrayRef {
    let (mut starts, mut ends, mut counts, mut gaps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut offsets = vec![0i32];
    for (mut recs, gap) in groups {
        for ep in build(&mut recs, gap) {
            starts.push(ep.start);
            ends.push(ep.end);
            counts.push(ep.records);
            gaps.push(ep.gap_days);
        }
        offsets.push(starts.len() as i32);
    }
    let structs = StructArray::new(
        episode_fields(),
        vec![
            Arc::new(Date32Array::from(starts)),
            Arc::new(Date32Array::from(ends)),
            Arc::new(Int64Array::from(counts)),
            Arc::new(Int64Array::from(gaps)),
        ],
        None,
    );
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Struct(episode_fields()), true)),
        OffsetBuffer::new(offsets.into()),
        Arc::new(structs),
        None,
    ))
}

fn dates_list(groups: &[Vec<(i32, i32)>], pick: fn(&(i32, i32)) -> i32) -> ArrayRef {
    let mut values = Vec::new();
    let mut offsets = vec![0i32];
    for g in groups {
        values.extend(g.iter().map(pick));
        offsets.push(values.len() as i32);
    }
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Date32, true)),
        OffsetBuffer::new(offsets.into()),
        Arc::new(Date32Array::from(values)),
        None,
    ))
}

/// One group's records: (start, end) days.
type Records = Vec<(i32, i32)>;

/// Reads a state batch back into per-row record lists.
fn read_state(values: &[ArrayRef]) -> Result<Vec<(Records, Option<i64>)>> {
    let (Some(starts), Some(ends)) = (
        values[0].as_list_opt::<i32>(),
        values[1].as_list_opt::<i32>(),
    ) else {
        return exec_err!("episodes: unexpected state types");
    };
    let gaps = values[2].as_primitive::<Int64Type>();
    let mut out = Vec::with_capacity(starts.len());
    for row in 0..starts.len() {
        let s = starts.value(row);
        let e = ends.value(row);
        let (s, e) = (
            s.as_primitive::<Date32Type>(),
            e.as_primitive::<Date32Type>(),
        );
        let recs = s
            .values()
            .iter()
            .copied()
            .zip(e.values().iter().copied())
            .collect();
        out.push((recs, gaps.is_valid(row).then(|| gaps.value(row))));
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct EpisodesAccumulator {
    records: Vec<(i32, i32)>,
    gap: Option<i64>,
}

impl Accumulator for EpisodesAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (recs, gap) = records(values);
        if !recs.is_empty() && self.gap.is_none() {
            self.gap = Some(gap);
        }
        self.records
            .extend(recs.into_iter().map(|(_, s, e)| (s, e)));
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for (recs, gap) in read_state(states)? {
            self.gap = self.gap.or(gap);
            self.records.extend(recs);
        }
        Ok(())
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let groups = [std::mem::take(&mut self.records)];
        let out = vec![
            ScalarValue::try_from_array(&dates_list(&groups, |r| r.0), 0)?,
            ScalarValue::try_from_array(&dates_list(&groups, |r| r.1), 0)?,
            ScalarValue::Int64(self.gap),
        ];
        let [records] = groups;
        self.records = records;
        Ok(out)
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        let list = to_list(std::iter::once((
            self.records.clone(),
            self.gap.unwrap_or(0),
        )));
        ScalarValue::try_from_array(&list, 0)
    }
    fn size(&self) -> usize {
        size_of_val(self) + self.records.capacity() * 8
    }
}

/// The grouped form: one record list per group, so GROUP BY over many persons stays fast.
#[derive(Debug, Default)]
struct EpisodesGroups {
    records: Vec<Vec<(i32, i32)>>,
    gaps: Vec<Option<i64>>,
}

impl EpisodesGroups {
    fn resize(&mut self, n: usize) {
        if self.records.len() < n {
            self.records.resize_with(n, Vec::new);
            self.gaps.resize(n, None);
        }
    }

    fn take(&mut self, emit_to: EmitTo) -> (Vec<Records>, Vec<Option<i64>>) {
        (
            emit_to.take_needed(&mut self.records),
            emit_to.take_needed(&mut self.gaps),
        )
    }
}

impl GroupsAccumulator for EpisodesGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total: usize,
    ) -> Result<()> {
        self.resize(total);
        let (recs, gap) = records(values);
        for (i, s, e) in recs {
            if filter.is_some_and(|f| !f.is_valid(i) || !f.value(i)) {
                continue;
            }
            let g = groups[i];
            self.records[g].push((s, e));
            self.gaps[g].get_or_insert(gap);
        }
        Ok(())
    }
    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (records, gaps) = self.take(emit_to);
        Ok(to_list(
            records
                .into_iter()
                .zip(gaps)
                .map(|(r, g)| (r, g.unwrap_or(0))),
        ))
    }
    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (records, gaps) = self.take(emit_to);
        Ok(vec![
            dates_list(&records, |r| r.0),
            dates_list(&records, |r| r.1),
            Arc::new(Int64Array::from(gaps)),
        ])
    }
    fn merge_batch(&mut self, values: &[ArrayRef], groups: &[usize], total: usize) -> Result<()> {
        self.resize(total);
        for (i, (recs, gap)) in read_state(values)?.into_iter().enumerate() {
            let g = groups[i];
            self.records[g].extend(recs);
            if self.gaps[g].is_none() {
                self.gaps[g] = gap;
            }
        }
        Ok(())
    }
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut each = EpisodesGroups::default();
        let n = values[0].len();
        let groups: Vec<usize> = (0..n).collect();
        each.update_batch(values, &groups, filter, n)?;
        each.state(EmitTo::All)
    }
    fn size(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.capacity() * 8 + 24)
            .sum::<usize>()
            + self.gaps.capacity() * 16
    }
}

/// Disclosure classes of the episode functions: within a person, total.
pub const DISCLOSURE: &[(&str, crate::Disclosure)] = &[
    ("episodes", crate::Disclosure::Total),
    ("episode_number", crate::Disclosure::Total),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(recs: &[(i32, i32)], gap: i64) -> Vec<(i32, i32, i64, i64)> {
        build(&mut recs.to_vec(), gap)
            .into_iter()
            .map(|e| (e.start, e.end, e.records, e.gap_days))
            .collect()
    }

    #[test]
    fn gap_exactly_gap_days_merges_and_one_more_does_not() {
        assert_eq!(eps(&[(0, 10), (40, 50)], 30), vec![(0, 50, 2, 30)]);
        assert_eq!(
            eps(&[(0, 10), (41, 50)], 30),
            vec![(0, 10, 1, 0), (41, 50, 1, 0)]
        );
    }

    #[test]
    fn overlapping_and_touching_records_do_not_count_twice() {
        // [0,10] and [5,20] overlap: covered 20, length 20.
        assert_eq!(eps(&[(0, 10), (5, 20)], 0), vec![(0, 20, 2, 0)]);
        // Touching ([0,10], [10,20]) merges; a one-day step ([0,10], [11,20]) leaves a gap of 1.
        assert_eq!(eps(&[(0, 10), (10, 20)], 0), vec![(0, 20, 2, 0)]);
        assert_eq!(eps(&[(0, 10), (11, 20)], 30), vec![(0, 20, 2, 1)]);
    }

    #[test]
    fn same_day_records_null_like_ends_and_end_before_start() {
        assert_eq!(eps(&[(5, 5), (5, 5), (5, 5)], 0), vec![(5, 5, 3, 0)]);
        // End before start is treated as ending on the start.
        assert_eq!(eps(&[(10, 3)], 30), vec![(10, 10, 1, 0)]);
        assert_eq!(eps(&[], 30), vec![]);
    }

    #[test]
    fn a_long_record_keeps_later_ones_inside() {
        // The running max end, not the previous record's end, decides.
        assert_eq!(
            eps(&[(0, 100), (10, 20), (125, 130)], 30),
            vec![(0, 130, 3, 25)]
        );
    }

    #[test]
    fn a_person_with_100k_records_is_linear() {
        let recs: Vec<(i32, i32)> = (0..100_000).map(|i| (i * 40, i * 40 + 10)).rev().collect();
        let out = eps(&recs, 30);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].2, 100_000);
        assert_eq!(out[0].3, 99_999 * 30);
        let apart: Vec<(i32, i32)> = (0..100_000).map(|i| (i * 40, i * 40 + 5)).collect();
        assert_eq!(eps(&apart, 30).len(), 100_000);
    }
}
