-- The same filter as a semi-join on concept_ancestor.
SELECT count(*) AS dispensings, count(DISTINCT person_id) AS persons
  FROM ndb.drug_exposure
 WHERE drug_concept_id IN (SELECT descendant_concept_id FROM vocab.concept_ancestor
                            WHERE ancestor_concept_id = 2000024)
