-- Dispensings of any NSAID (ATC M01A, concept 2000024, and every concept
-- below it): is_a() probes the vocabulary graph per row.
SELECT count(*) AS dispensings, count(DISTINCT person_id) AS persons
  FROM ndb.drug_exposure
 WHERE is_a(drug_concept_id, 2000024)
