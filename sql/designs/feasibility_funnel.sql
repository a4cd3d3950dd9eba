-- Trial feasibility: an eligibility funnel. Each criterion is a person set
-- (bitmap); each step counts the persons meeting every criterion so far,
-- the last step excluding persons with any long-term-care certification in
-- the linked long-term-care source.
--   1. a record of the condition
--   2. born in born_from..born_to
--   3. dispensed the drug on or after drug_from
--   4. observed through observed_through
--   5. excluded: any long-term-care certification
--
-- param condition codes - condition codes, for example 'ICD10:E11.9'
-- param drug codes - drug codes, for example 'ATC:A10BA02'
-- param born_from integer - first year of birth
-- param born_to integer - last year of birth
-- param drug_from date - first day a dispensing counts, for example '2022-01-01'
-- param observed_through date - last day persons must be observed, for example '2023-12-31'
-- param source source ndb the source schema holding persons, conditions and dispensings
-- param care source kaigo the long-term-care source schema (care_certification)
WITH c AS (
    SELECT
      (SELECT rb_build_agg(person_id) FROM {source}.condition_occurrence WHERE in_concept_set(condition_concept_id, {condition})) AS condition,
      (SELECT rb_build_agg(person_id) FROM {source}.person WHERE year_of_birth BETWEEN {born_from} AND {born_to}) AS age,
      (SELECT rb_build_agg(person_id) FROM {source}.drug_exposure
        WHERE in_concept_set(drug_concept_id, {drug}) AND drug_exposure_start_date >= {drug_from}) AS drug,
      (SELECT rb_build_agg(person_id) FROM {source}.observation_period WHERE observation_period_end_date >= {observed_through}) AS observed,
      (SELECT rb_build_agg(person_id) FROM {care}.care_certification) AS long_term_care
)
SELECT step, criterion, rb_cardinality(persons) AS persons
  FROM (
    SELECT 1 AS step, 'condition ' || {condition.label} AS criterion, condition AS persons FROM c
    UNION ALL SELECT 2, 'born ' || CAST({born_from} AS VARCHAR) || '-' || CAST({born_to} AS VARCHAR), rb_and(condition, age) FROM c
    UNION ALL SELECT 3, 'dispensed ' || {drug.label} || ' since ' || CAST({drug_from} AS VARCHAR), rb_and(rb_and(condition, age), drug) FROM c
    UNION ALL SELECT 4, 'observed through ' || CAST({observed_through} AS VARCHAR), rb_and(rb_and(rb_and(condition, age), drug), observed) FROM c
    UNION ALL SELECT 5, 'no long-term care', rb_andnot(rb_and(rb_and(rb_and(condition, age), drug), observed), long_term_care) FROM c
  )
