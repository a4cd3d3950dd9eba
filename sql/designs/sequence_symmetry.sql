-- Sequence symmetry analysis: persons whose first dispensings of an index
-- drug and a marker drug fall within `max_days` days of one another; more
-- index-first than marker-first persons points to the index drug causing
-- what the marker treats (a prescribing cascade). Estimate: the crude
-- sequence ratio with a 95% interval on its logarithm (variance
-- 1/index_first + 1/marker_first). Not adjusted for trends in prescribing.
--
-- param index_drug codes - drug codes of the index drug, for example 'ATC:C08CA01'
-- param marker_drug codes - drug codes of the marker drug, for example 'ATC:C03CA01'
-- param max_days integer 365 most days between the two first dispensings
-- param source source ndb the source schema holding the dispensings
WITH firsts AS (
    SELECT person_id,
           min(CASE WHEN in_concept_set(drug_concept_id, {index_drug}) THEN drug_exposure_start_date END) AS a,
           min(CASE WHEN in_concept_set(drug_concept_id, {marker_drug}) THEN drug_exposure_start_date END) AS f
      FROM {source}.drug_exposure
     WHERE in_concept_set(drug_concept_id, {index_drug}) OR in_concept_set(drug_concept_id, {marker_drug})
     GROUP BY person_id
), pairs AS (
    SELECT person_id, a, f FROM firsts
     WHERE a IS NOT NULL AND f IS NOT NULL AND a <> f AND in_window(f, a, -{max_days}, {max_days})
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
