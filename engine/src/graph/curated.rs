//! The vocabulary's curated relationships, held sorted by their first
//! concept so that the edges of one concept are a slice, not a scan.
//!
//! Read once from `vocab.concept_relationship` (valid rows, no self-loops)
//! and kept as 24 bytes a row; the rows of `graph.edges` are written from
//! them only for what a query reads.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::tables::{TableKind, schema};
use crate::Result;

/// Where the curated edges come from, as `derived_from` shows it.
pub const SOURCE: &str = "vocab.concept_relationship";

/// Relationships shown with provenance `mapping`; the others are `vocabulary`.
const MAPPINGS: [&str; 4] = [
    "Maps to",
    "Mapped from",
    "Maps to value",
    "Value mapped from",
];

#[derive(Debug, Clone, Copy)]
struct Row {
    from: i64,
    to: i64,
    relationship: u32,
}

/// The curated edges of one store's vocabulary.
#[derive(Debug, Default)]
pub struct Curated {
    /// Sorted by `from`, then relationship and `to`.
    rows: Vec<Row>,
    /// Relationship ids by their number in `rows`.
    names: Vec<String>,
}

impl Curated {
    /// Reads the valid relationships of the store shown on `ctx`.
    pub async fn load(ctx: &SessionContext) -> Result<Curated> {
        let sql = "SELECT CAST(concept_id_1 AS BIGINT), CAST(concept_id_2 AS BIGINT), \
                   CAST(relationship_id AS VARCHAR) FROM vocab.concept_relationship \
                   WHERE (invalid_reason IS NULL OR invalid_reason = '') AND concept_id_1 <> concept_id_2 \
                   AND concept_id_1 IS NOT NULL AND concept_id_2 IS NOT NULL AND relationship_id IS NOT NULL";
        let mut stream = ctx.sql(sql).await?.execute_stream().await?;
        let mut curated = Curated::default();
        let mut number: HashMap<String, u32> = HashMap::new();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let from = batch.column(0).as_primitive::<Int64Type>();
            let to = batch.column(1).as_primitive::<Int64Type>();
            let names = datafusion::arrow::compute::cast(
                batch.column(2),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )?;
            let names = names.as_string::<i32>();
            curated.rows.reserve(batch.num_rows());
            for r in 0..batch.num_rows() {
                let name = names.value(r);
                let relationship = match number.get(name) {
                    Some(&n) => n,
                    None => {
                        let n = curated.names.len() as u32;
                        curated.names.push(name.to_owned());
                        number.insert(name.to_owned(), n);
                        n
                    }
                };
                curated.rows.push(Row {
                    from: from.value(r),
                    to: to.value(r),
                    relationship,
                });
            }
        }
        curated
            .rows
            .sort_unstable_by_key(|r| (r.from, r.relationship, r.to));
        Ok(curated)
    }

    /// Number of edges.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the vocabulary has no relationship.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows whose first concept is one of `from` (all rows for `None`).
    pub fn ranges(&self, from: Option<&[i64]>) -> Vec<Range<usize>> {
        match from {
            None => vec![0..self.rows.len()],
            Some(concepts) => concepts
                .iter()
                .map(|&c| {
                    let lo = self.rows.partition_point(|r| r.from < c);
                    let hi = lo + self.rows[lo..].partition_point(|r| r.from == c);
                    lo..hi
                })
                .filter(|r| !r.is_empty())
                .collect(),
        }
    }

    /// Rows `range` as rows of `graph.edges`.
    pub fn batch(&self, range: Range<usize>) -> datafusion::common::Result<RecordBatch> {
        let rows = &self.rows[range];
        let n = rows.len();
        let name = |r: &Row| self.names[r.relationship as usize].as_str();
        let nulls_f = || Arc::new(Float64Array::new_null(n)) as ArrayRef;
        let nulls_i = || Arc::new(Int64Array::new_null(n)) as ArrayRef;
        let nulls_s = || Arc::new(StringArray::new_null(n)) as ArrayRef;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.from))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.to))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(name))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| {
                if MAPPINGS.contains(&name(r)) {
                    "mapping"
                } else {
                    "vocabulary"
                }
            }))),
            nulls_s(),
            nulls_f(),
            nulls_f(),
            nulls_i(),
            nulls_i(),
            nulls_s(),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                SOURCE, n,
            ))),
        ];
        Ok(RecordBatch::try_new(schema(TableKind::Edges), columns)?)
    }
}

/// The rows of a batch sorted by its first column (`concept_id_1`) whose
/// first concept is one of `from`, as slices (all of it for `None`).
pub fn slices(sorted: &RecordBatch, from: Option<&[i64]>) -> Vec<RecordBatch> {
    let Some(concepts) = from else {
        return vec![sorted.clone()];
    };
    let ids = sorted.column(0).as_primitive::<Int64Type>();
    if ids.null_count() > 0 {
        return vec![sorted.clone()];
    }
    let values = ids.values();
    concepts
        .iter()
        .filter_map(|&c| {
            let lo = values.partition_point(|&v| v < c);
            let hi = lo + values[lo..].partition_point(|&v| v == c);
            (hi > lo).then(|| sorted.slice(lo, hi - lo))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curated(rows: &[(i64, i64, &str)]) -> Curated {
        let mut c = Curated::default();
        for &(from, to, name) in rows {
            let relationship = match c.names.iter().position(|n| n == name) {
                Some(i) => i as u32,
                None => {
                    c.names.push(name.into());
                    (c.names.len() - 1) as u32
                }
            };
            c.rows.push(Row {
                from,
                to,
                relationship,
            });
        }
        c.rows
            .sort_unstable_by_key(|r| (r.from, r.relationship, r.to));
        c
    }

    #[test]
    fn the_edges_of_a_concept_are_its_rows_and_no_others() {
        let c = curated(&[
            (5, 1, "Is a"),
            (1, 5, "Subsumes"),
            (5, 9, "Maps to"),
            (7, 5, "Is a"),
            (5, 2, "Is a"),
        ]);
        let firsts = |ranges: Vec<Range<usize>>| -> Vec<(i64, i64)> {
            ranges
                .into_iter()
                .flat_map(|r| c.rows[r].iter().map(|r| (r.from, r.to)).collect::<Vec<_>>())
                .collect()
        };
        let mut of5 = firsts(c.ranges(Some(&[5])));
        of5.sort();
        assert_eq!(of5, vec![(5, 1), (5, 2), (5, 9)]);
        assert_eq!(firsts(c.ranges(Some(&[3, 8]))), vec![]);
        assert_eq!(firsts(c.ranges(None)).len(), 5);
        let batch = c.batch(c.ranges(Some(&[5]))[0].clone()).unwrap();
        let provenance = batch.column(3).as_string::<i32>();
        let relationship = batch.column(2).as_string::<i32>();
        for r in 0..batch.num_rows() {
            let want = if relationship.value(r) == "Maps to" {
                "mapping"
            } else {
                "vocabulary"
            };
            assert_eq!(provenance.value(r), want);
        }
    }

    #[test]
    fn slices_of_a_sorted_batch() {
        let ids = Int64Array::from(vec![1, 1, 3, 4, 4, 4, 9]);
        let batch = RecordBatch::try_from_iter([("id", Arc::new(ids) as ArrayRef)]).unwrap();
        let rows = |from: &[i64]| -> usize {
            slices(&batch, Some(from))
                .iter()
                .map(|b| b.num_rows())
                .sum()
        };
        assert_eq!(rows(&[4]), 3);
        assert_eq!(rows(&[1, 9]), 3);
        assert_eq!(rows(&[2, 10, 0]), 0);
        assert_eq!(slices(&batch, None)[0].num_rows(), 7);
    }
}
