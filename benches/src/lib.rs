//! Inputs for the benchmarks: synthetic dispensing records, cohorts and a
//! concept hierarchy, in memory, deterministic.

use std::sync::Arc;

use datafusion::arrow::array::{BinaryArray, Date32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use tsunagu_udfs::vocab::VocabGraph;

/// A small deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `records` dispensings of `persons` persons as (person_id, concept_id, start, end),
/// sorted by person as a person-clustered layout would hold them.
pub fn dispensings(records: usize, persons: usize) -> RecordBatch {
    let mut rng = Rng::new(7);
    let mut rows: Vec<(i64, i64, i32, i32)> = (0..records)
        .map(|_| {
            let p = rng.below(persons as u64) as i64;
            let c = 1000 + rng.below(50) as i64;
            let s = 16_000 + rng.below(3000) as i32;
            (p, c, s, s + 7 + rng.below(60) as i32)
        })
        .collect();
    rows.sort_unstable();
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Int64, false),
        Field::new("concept_id", DataType::Int64, false),
        Field::new("start_date", DataType::Date32, false),
        Field::new("end_date", DataType::Date32, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.3))),
        ],
    )
    .expect("consistent columns")
}

/// Registers a batch as a table, split into `partitions` partitions.
pub fn register(ctx: &SessionContext, name: &str, batch: RecordBatch, partitions: usize) {
    let n = batch.num_rows();
    let step = n.div_ceil(partitions.max(1)).max(1);
    let parts: Vec<Vec<RecordBatch>> = (0..n)
        .step_by(step)
        .map(|o| vec![batch.slice(o, step.min(n - o))])
        .collect();
    let table = MemTable::try_new(batch.schema(), parts).expect("mem table");
    ctx.register_table(name, Arc::new(table)).expect("register");
}

/// Two overlapping cohorts of about `size` persons each, as person_id tables
/// `cohort_a`, `cohort_b` and as bitmaps in the one-row table `bitmaps`.
pub fn cohorts(ctx: &SessionContext, size: usize) {
    let mut rng = Rng::new(11);
    let universe = (size as u64) * 3 / 2;
    let mut make = || {
        let mut ids: Vec<u32> = (0..size).map(|_| rng.below(universe) as u32).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let (a, b) = (make(), make());
    let table = |ids: &[u32]| {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "person_id",
            DataType::Int64,
            false,
        )]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(
                ids.iter().map(|&i| i as i64),
            ))],
        )
        .expect("batch")
    };
    register(ctx, "cohort_a", table(&a), 2);
    register(ctx, "cohort_b", table(&b), 2);
    let bytes = |ids: &[u32]| {
        let bm: roaring::RoaringBitmap = ids.iter().copied().collect();
        let mut out = Vec::new();
        bm.serialize_into(&mut out).expect("serialize");
        out
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Binary, false),
        Field::new("b", DataType::Binary, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(BinaryArray::from_iter_values([bytes(&a)])),
            Arc::new(BinaryArray::from_iter_values([bytes(&b)])),
        ],
    )
    .expect("batch");
    register(ctx, "bitmaps", batch, 1);
}

/// A three-level hierarchy over concepts 1000..1050 (ancestors 10..15, root 1),
/// registered for `is_a` and as a `concept_ancestor` table.
pub fn hierarchy(ctx: &SessionContext) {
    let mut rows: Vec<(i64, i64, i64)> = vec![(1, 1, 0)];
    for g in 10..15 {
        rows.push((g, g, 0));
        rows.push((1, g, 1));
    }
    for c in 1000..1050 {
        let g = 10 + (c - 1000) / 10;
        rows.push((c, c, 0));
        rows.push((g, c, 1));
        rows.push((1, c, 2));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("ancestor_concept_id", DataType::Int64, false),
        Field::new("descendant_concept_id", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .expect("batch");
    register(ctx, "concept_ancestor", batch, 1);
    let graph = VocabGraph::new(rows, vec![], &[]);
    tsunagu_udfs::register_vocabulary(ctx, Arc::new(graph));
}

/// A context with the RWD functions.
pub fn context() -> SessionContext {
    let ctx = SessionContext::new();
    tsunagu_udfs::register(&ctx);
    ctx
}
