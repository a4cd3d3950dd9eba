-- The same set algebra with INTERSECT / UNION / EXCEPT over the cohorts'
-- person_id rows (tables on DuckDB, cohort('name') on Tsunagu).
SELECT (SELECT count(*) FROM (SELECT person_id FROM bench_observed INTERSECT SELECT person_id FROM bench_dispensed) t) AS both_cohorts,
       (SELECT count(*) FROM (SELECT person_id FROM bench_observed UNION SELECT person_id FROM bench_dispensed) t) AS either_cohort,
       (SELECT count(*) FROM (SELECT person_id FROM bench_observed EXCEPT SELECT person_id FROM bench_dispensed) t) AS observed_only
