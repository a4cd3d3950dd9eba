-- Cohort algebra with set operations: persons with hypertension who were
-- dispensed amlodipine, never furosemide, and are not in DPC inpatient data.
WITH hypertension AS (
    SELECT person_id FROM ndb.condition_occurrence co
      JOIN vocab.concept_ancestor a ON a.descendant_concept_id = co.condition_concept_id
      JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id
     WHERE c.vocabulary_id = 'ICD10' AND c.concept_code = 'I10'
), amlodipine AS (
    SELECT person_id FROM ndb.drug_exposure d
      JOIN vocab.concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id
      JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id
     WHERE c.vocabulary_id = 'ATC' AND c.concept_code = 'C08CA01'
), furosemide AS (
    SELECT person_id FROM ndb.drug_exposure d
      JOIN vocab.concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id
      JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id
     WHERE c.vocabulary_id = 'ATC' AND c.concept_code = 'C03CA01'
), cohort AS (
    SELECT person_id FROM hypertension
    INTERSECT SELECT person_id FROM amlodipine
    EXCEPT SELECT person_id FROM furosemide
    EXCEPT SELECT person_id FROM dpc.visit_occurrence
)
SELECT count(*) AS persons FROM cohort
