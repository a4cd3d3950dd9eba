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
)
SELECT index_first, marker_first,
       CAST(index_first AS DOUBLE) / marker_first AS crude_sequence_ratio,
       round(exp(ln(CAST(index_first AS DOUBLE) / marker_first) - 1.96 * sqrt(1.0 / index_first + 1.0 / marker_first)), 4) AS lower_95,
       round(exp(ln(CAST(index_first AS DOUBLE) / marker_first) + 1.96 * sqrt(1.0 / index_first + 1.0 / marker_first)), 4) AS upper_95
  FROM counts
