-- Sequence symmetry analysis: persons whose first dispensings of an index
-- drug and a marker drug fall within `max_days` days of one another; more
-- index-first than marker-first persons points to the index drug causing
-- what the marker treats (a prescribing cascade). Estimates: the crude
-- sequence ratio with a 95% interval on its logarithm (variance
-- 1/index_first + 1/marker_first), and the sequence ratio adjusted for
-- trends in prescribing: divided by the null-effect ratio that the monthly
-- counts of first dispensings of each drug give on their own (Tsiropoulos
-- et al. 2009), the interval divided likewise.
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
      JOIN marker_months k ON k.m BETWEEN i.m - ({max_days} + 15) / 30 AND i.m + ({max_days} + 15) / 30
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
