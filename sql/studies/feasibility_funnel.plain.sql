-- The same funnel as feasibility_funnel.sql with INTERSECT and EXCEPT.
WITH diabetes AS (SELECT DISTINCT person_id FROM ndb.condition_occurrence WHERE condition_concept_id IN (SELECT a.descendant_concept_id FROM vocab.concept_ancestor a JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id WHERE c.vocabulary_id = 'ICD10' AND c.concept_code = 'E11.9')),
age AS (SELECT DISTINCT person_id FROM ndb.person WHERE year_of_birth BETWEEN 1949 AND 1982),
metformin AS (
    SELECT DISTINCT d.person_id FROM ndb.drug_exposure d
      JOIN vocab.concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id
     WHERE a.ancestor_concept_id = (SELECT concept_id FROM vocab.concept WHERE vocabulary_id = 'ATC' AND concept_code = 'A10BA02') AND d.drug_exposure_start_date >= DATE '2022-01-01'),
observed AS (SELECT DISTINCT person_id FROM ndb.observation_period WHERE observation_period_end_date >= DATE '2023-12-31'),
long_term_care AS (SELECT DISTINCT person_id FROM kaigo.care_certification),
s1 AS (SELECT person_id FROM diabetes),
s2 AS (SELECT person_id FROM s1 INTERSECT SELECT person_id FROM age),
s3 AS (SELECT person_id FROM s2 INTERSECT SELECT person_id FROM metformin),
s4 AS (SELECT person_id FROM s3 INTERSECT SELECT person_id FROM observed),
s5 AS (SELECT person_id FROM s4 EXCEPT SELECT person_id FROM long_term_care)
SELECT 1 AS step, 'condition E11.9' AS criterion, (SELECT count(*) FROM s1) AS persons
UNION ALL SELECT 2, 'born 1949-1982', (SELECT count(*) FROM s2)
UNION ALL SELECT 3, 'dispensed A10BA02 since 2022-01-01', (SELECT count(*) FROM s3)
UNION ALL SELECT 4, 'observed through 2023-12-31', (SELECT count(*) FROM s4)
UNION ALL SELECT 5, 'no long-term care', (SELECT count(*) FROM s5)
ORDER BY step
