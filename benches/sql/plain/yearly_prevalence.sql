-- Persons observed and persons with a hypertension record in each calendar
-- year, over a year series from generate_series.
WITH years AS (
    SELECT CAST(generate_series AS INTEGER) AS year FROM generate_series(2015, 2024)
), observed AS (
    SELECT y.year, o.person_id
      FROM years y
      JOIN ndb.observation_period o
        ON o.observation_period_start_date <= make_date(y.year, 12, 31)
       AND o.observation_period_end_date >= make_date(y.year, 1, 1)
), cases AS (
    SELECT DISTINCT CAST(extract(year FROM co.condition_start_date) AS INTEGER) AS year, co.person_id
      FROM ndb.condition_occurrence co
      JOIN vocab.concept_ancestor a ON a.descendant_concept_id = co.condition_concept_id
      JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id
     WHERE c.vocabulary_id = 'ICD10' AND c.concept_code = 'I10'
)
SELECT o.year, count(DISTINCT o.person_id) AS observed, count(DISTINCT c.person_id) AS cases
  FROM observed o
  LEFT JOIN cases c ON c.year = o.year AND c.person_id = o.person_id
 GROUP BY o.year
 ORDER BY o.year
