-- OHDSI condition eras (30-day persistence window) with LAG over each
-- person's and concept's occurrences, as written for PostgreSQL.
WITH occ AS (
    SELECT person_id, condition_concept_id AS concept_id, condition_start_date AS start_date
      FROM ndb.condition_occurrence
     WHERE condition_start_date IS NOT NULL
), marked AS (
    SELECT person_id, concept_id, start_date,
           CASE WHEN max(start_date) OVER (PARTITION BY person_id, concept_id ORDER BY start_date
                                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + 30 >= start_date
                THEN 0 ELSE 1 END AS is_start
      FROM occ
), grouped AS (
    SELECT person_id, concept_id, start_date,
           sum(is_start) OVER (PARTITION BY person_id, concept_id ORDER BY start_date
                               ROWS UNBOUNDED PRECEDING) AS era_number
      FROM marked
), eras AS (
    SELECT person_id, concept_id, era_number, min(start_date) AS era_start, max(start_date) AS era_end,
           count(*) AS occurrences
      FROM grouped
     GROUP BY person_id, concept_id, era_number
)
SELECT count(*) AS eras, sum(occurrences) AS occurrences,
       sum(era_end - era_start) AS era_days, count(DISTINCT person_id) AS persons
  FROM eras
