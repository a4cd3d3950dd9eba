//! Criterion benchmarks of the RWD functions against their plain-SQL
//! formulations, on in-memory inputs.
//!
//! `TSUNAGU_BENCH_RECORDS` (default 1,000,000; the 10,000,000 fits
//! in memory here) and `TSUNAGU_BENCH_COHORT` (default 1,000,000) set sizes.

use criterion::{Criterion, criterion_group, criterion_main};
use datafusion::prelude::SessionContext;
use tsunagu_benches::{cohorts, context, dispensings, hierarchy, register};

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(rt: &tokio::runtime::Runtime, ctx: &SessionContext, sql: &str) -> usize {
    rt.block_on(async {
        let batches = ctx
            .sql(sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        batches.iter().map(|b| b.num_rows()).sum()
    })
}

/// OHDSI-style eras with window functions: the formulation the custom
/// aggregate replaces.
const ERAS_WINDOW_SQL: &str = "
WITH ordered AS (
  SELECT person_id, concept_id, start_date, end_date,
         max(end_date) OVER (PARTITION BY person_id, concept_id ORDER BY start_date, end_date
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
    FROM dispensings
), flagged AS (
  SELECT *, CASE WHEN prev_end IS NULL OR start_date > prev_end + 30 THEN 1 ELSE 0 END AS opens
    FROM ordered
), numbered AS (
  SELECT *, sum(opens) OVER (PARTITION BY person_id, concept_id ORDER BY start_date, end_date
                             ROWS UNBOUNDED PRECEDING) AS era
    FROM flagged
)
SELECT person_id, concept_id, era, min(start_date) AS era_start, max(end_date) AS era_end, count(*) AS records
  FROM numbered GROUP BY person_id, concept_id, era";

const ERAS_UDF_SQL: &str = "
SELECT person_id, concept_id, unnest(episodes(start_date, end_date, 30)) AS era
  FROM dispensings GROUP BY person_id, concept_id";

fn episodes(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let records = size("TSUNAGU_BENCH_RECORDS", 1_000_000);
    let ctx = context();
    register(&ctx, "dispensings", dispensings(records, records / 20), 2);
    let a = run(&rt, &ctx, ERAS_UDF_SQL);
    let b = run(&rt, &ctx, ERAS_WINDOW_SQL);
    assert_eq!(a, b, "both formulations find the same eras");
    let mut g = c.benchmark_group(format!("eras_{records}_records"));
    g.sample_size(10);
    g.bench_function("episodes_aggregate", |bch| {
        bch.iter(|| run(&rt, &ctx, ERAS_UDF_SQL))
    });
    g.bench_function("window_sql", |bch| {
        bch.iter(|| run(&rt, &ctx, ERAS_WINDOW_SQL))
    });
    g.finish();
}

fn cohort_algebra(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let size = size("TSUNAGU_BENCH_COHORT", 1_000_000);
    let ctx = context();
    cohorts(&ctx, size);
    let bitmap = |op: &str| format!("SELECT rb_cardinality({op}(a, b)) FROM bitmaps");
    let sql = |op: &str| {
        format!(
            "SELECT count(*) FROM (SELECT person_id FROM cohort_a {op} SELECT person_id FROM cohort_b)"
        )
    };
    let count = |q: &str| {
        rt.block_on(async {
            let b = ctx
                .sql(q)
                .await
                .expect("plans")
                .collect()
                .await
                .expect("runs");
            datafusion::arrow::util::display::array_value_to_string(b[0].column(0), 0)
                .expect("value")
        })
    };
    assert_eq!(count(&bitmap("rb_and")), count(&sql("INTERSECT")));
    assert_eq!(count(&bitmap("rb_andnot")), count(&sql("EXCEPT")));
    let mut g = c.benchmark_group(format!("cohorts_{size}_persons"));
    g.sample_size(10);
    for (name, op, set_op) in [
        ("intersect", "rb_and", "INTERSECT"),
        ("difference", "rb_andnot", "EXCEPT"),
        ("union", "rb_or", "UNION"),
    ] {
        let (bq, sq) = (bitmap(op), sql(set_op));
        g.bench_function(format!("{name}_bitmap"), |bch| bch.iter(|| count(&bq)));
        g.bench_function(format!("{name}_sql"), |bch| bch.iter(|| count(&sq)));
    }
    g.finish();
}

fn is_a(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let records = size("TSUNAGU_BENCH_RECORDS", 1_000_000);
    let ctx = context();
    register(&ctx, "dispensings", dispensings(records, records / 20), 2);
    hierarchy(&ctx);
    let udf = "SELECT count(*) FROM dispensings WHERE is_a(concept_id, 11)";
    let join = "SELECT count(*) FROM dispensings d JOIN concept_ancestor a ON a.descendant_concept_id = d.concept_id WHERE a.ancestor_concept_id = 11";
    let mut g = c.benchmark_group(format!("is_a_{records}_records"));
    g.sample_size(10);
    g.bench_function("is_a", |bch| bch.iter(|| run(&rt, &ctx, udf)));
    g.bench_function("concept_ancestor_join", |bch| {
        bch.iter(|| run(&rt, &ctx, join))
    });
    g.finish();
}

criterion_group!(benches, episodes, cohort_algebra, is_a);
criterion_main!(benches);
