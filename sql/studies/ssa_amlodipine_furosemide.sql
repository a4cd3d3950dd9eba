-- Sequence symmetry analysis: amlodipine (ATC C08CA01)
-- and furosemide (ATC C03CA01), first dispensings of each
-- within 365 days of one another. More amlodipine-first than
-- furosemide-first pairs points to a prescribing cascade (oedema treated
-- with a diuretic); the generator plants one.
WITH firsts AS (
    SELECT person_id,
           min(CASE WHEN in_concept_set(drug_concept_id, 'ATC', 'C08CA01') THEN drug_exposure_start_date END) AS a,
           min(CASE WHEN in_concept_set(drug_concept_id, 'ATC', 'C03CA01') THEN drug_exposure_start_date END) AS f
      FROM ndb.drug_exposure
     WHERE in_concept_set(drug_concept_id, 'ATC', 'C08CA01', 'C03CA01')
     GROUP BY person_id
), pairs AS (
    SELECT person_id, a, f FROM firsts
     WHERE a IS NOT NULL AND f IS NOT NULL AND a <> f AND in_window(f, a, -365, 365)
)
SELECT sum(CASE WHEN a < f THEN 1 ELSE 0 END) AS amlodipine_first,
       sum(CASE WHEN f < a THEN 1 ELSE 0 END) AS furosemide_first,
       CAST(sum(CASE WHEN a < f THEN 1 ELSE 0 END) AS DOUBLE) / sum(CASE WHEN f < a THEN 1 ELSE 0 END) AS crude_sequence_ratio
  FROM pairs
