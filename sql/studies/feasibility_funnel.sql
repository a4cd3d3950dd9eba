-- Trial feasibility: an eligibility funnel for a type 2 diabetes trial.
-- Each criterion is a cohort bitmap; each step counts the persons meeting
-- every criterion so far. Exclusions subtract a bitmap.
--   1. diagnosed with type 2 diabetes (ICD-10 E11.9)
--   2. aged 40-74 at the start of 2023
--   3. dispensed metformin (ATC A10BA02) in 2022-2023
--   4. observed in claims through 2023-12-31
--   5. excluded: any long-term-care certification (linked kaigo source)
WITH c AS (
    SELECT
      (SELECT rb_build_agg(person_id) FROM ndb.condition_occurrence WHERE in_concept_set(condition_concept_id, 'ICD10', 'E11.9')) AS diabetes,
      (SELECT rb_build_agg(person_id) FROM ndb.person WHERE year_of_birth BETWEEN 1949 AND 1982) AS age,
      (SELECT rb_build_agg(person_id) FROM ndb.drug_exposure
        WHERE in_concept_set(drug_concept_id, 'ATC', 'A10BA02') AND drug_exposure_start_date >= DATE '2022-01-01') AS metformin,
      (SELECT rb_build_agg(person_id) FROM ndb.observation_period WHERE observation_period_end_date >= DATE '2023-12-31') AS observed,
      (SELECT rb_build_agg(person_id) FROM kaigo.care_certification) AS long_term_care
)
SELECT step, criterion, rb_cardinality(persons) AS persons
  FROM (
    SELECT 1 AS step, 'type 2 diabetes' AS criterion, diabetes AS persons FROM c
    UNION ALL SELECT 2, 'aged 40-74', rb_and(diabetes, age) FROM c
    UNION ALL SELECT 3, 'on metformin since 2022', rb_and(rb_and(diabetes, age), metformin) FROM c
    UNION ALL SELECT 4, 'observed through 2023', rb_and(rb_and(rb_and(diabetes, age), metformin), observed) FROM c
    UNION ALL SELECT 5, 'no long-term care', rb_andnot(rb_and(rb_and(rb_and(diabetes, age), metformin), observed), long_term_care) FROM c
  )
 ORDER BY step
