-- The same sequence symmetry analysis as ssa_amlodipine_furosemide.sql in plain SQL.
WITH firsts AS (
    SELECT d.person_id,
           min(CASE WHEN k.concept_code = 'C08CA01' THEN d.drug_exposure_start_date END) AS a,
           min(CASE WHEN k.concept_code = 'C03CA01' THEN d.drug_exposure_start_date END) AS f
      FROM ndb.drug_exposure d
      JOIN vocab.concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id
      JOIN vocab.concept k ON k.concept_id = a.ancestor_concept_id AND k.vocabulary_id = 'ATC' AND k.concept_code IN ('C08CA01', 'C03CA01')
     GROUP BY d.person_id
), pairs AS (
    SELECT person_id, a, f FROM firsts
     WHERE a IS NOT NULL AND f IS NOT NULL AND a <> f AND f >= a - 365 AND f <= a + 365
), counts AS (
    SELECT sum(CASE WHEN a < f THEN 1 ELSE 0 END) AS index_first,
           sum(CASE WHEN f < a THEN 1 ELSE 0 END) AS marker_first
      FROM pairs
), index_months AS (
    SELECT CAST(date_part('year', a) * 12 + date_part('month', a) AS BIGINT) AS m, count(*) AS n
      FROM firsts WHERE a IS NOT NULL GROUP BY 1
), marker_months AS (
    SELECT CAST(date_part('year', f) * 12 + date_part('month', f) AS BIGINT) AS m, count(*) AS n
      FROM firsts WHERE f IS NOT NULL GROUP BY 1
), null_effect AS (
    -- Expected index-first over marker-first orders from the monthly counts of
    -- first dispensings alone (no causal link): pairs of months within the window.
    SELECT sum(CASE WHEN k.m > i.m THEN CAST(i.n AS DOUBLE) * k.n ELSE 0 END)
           / sum(CASE WHEN k.m < i.m THEN CAST(i.n AS DOUBLE) * k.n ELSE 0 END) AS ratio
      FROM index_months i
      JOIN marker_months k ON k.m BETWEEN i.m - (365 + 15) / 30 AND i.m + (365 + 15) / 30
), estimate AS (
    SELECT c.index_first, c.marker_first,
           CAST(c.index_first AS DOUBLE) / c.marker_first AS crude,
           1.96 * sqrt(1.0 / CAST(c.index_first AS DOUBLE) + 1.0 / CAST(c.marker_first AS DOUBLE)) AS z_se,
           n.ratio AS null_ratio
      FROM counts c CROSS JOIN null_effect n
)
SELECT index_first, marker_first,
       crude AS crude_sequence_ratio,
       round(exp(ln(crude) - z_se), 4) AS lower_95,
       round(exp(ln(crude) + z_se), 4) AS upper_95,
       round(null_ratio, 4) AS null_effect_ratio,
       round(crude / null_ratio, 4) AS adjusted_sequence_ratio,
       round(exp(ln(crude) - z_se) / null_ratio, 4) AS adjusted_lower_95,
       round(exp(ln(crude) + z_se) / null_ratio, 4) AS adjusted_upper_95
  FROM estimate
