-- Set algebra on two saved cohorts of the store (persons observed in the
-- claims source; persons with a dispensing): intersection, union and
-- difference of roaring bitmaps.
SELECT rb_cardinality(rb_and(cohort_bitmap('bench_observed'), cohort_bitmap('bench_dispensed'))) AS both_cohorts,
       rb_cardinality(rb_or(cohort_bitmap('bench_observed'), cohort_bitmap('bench_dispensed'))) AS either_cohort,
       rb_cardinality(rb_andnot(cohort_bitmap('bench_observed'), cohort_bitmap('bench_dispensed'))) AS observed_only
