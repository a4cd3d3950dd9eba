-- New users of a drug class: a first dispensing with a year of observation
-- before it and no dispensing of the class in that year (washout), and
-- whether an outcome follows within 90 days; NOT EXISTS and EXISTS as
-- written for PostgreSQL.
WITH class_drugs AS (
    SELECT a.descendant_concept_id AS concept_id
      FROM vocab.concept_ancestor a
      JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id
     WHERE c.vocabulary_id = 'ATC' AND c.concept_code = 'M01A'
), outcome AS (
    SELECT a.descendant_concept_id AS concept_id
      FROM vocab.concept_ancestor a
      JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id
     WHERE c.vocabulary_id = 'ICD10' AND c.concept_code = 'K92.2'
), dispensed AS (
    SELECT d.person_id, d.drug_exposure_start_date AS start_date
      FROM ndb.drug_exposure d
     WHERE d.drug_concept_id IN (SELECT concept_id FROM class_drugs)
), firsts AS (
    SELECT person_id, min(start_date) AS index_date FROM dispensed GROUP BY person_id
), eligible AS (
    SELECT f.person_id, f.index_date
      FROM firsts f
      JOIN ndb.observation_period o
        ON o.person_id = f.person_id
       AND o.observation_period_start_date <= f.index_date - 365
       AND o.observation_period_end_date >= f.index_date
     WHERE NOT EXISTS (SELECT 1 FROM dispensed d
                        WHERE d.person_id = f.person_id
                          AND d.start_date < f.index_date
                          AND d.start_date >= f.index_date - 365)
)
SELECT count(*) AS new_users,
       sum(CASE WHEN EXISTS (SELECT 1 FROM ndb.condition_occurrence co
                              WHERE co.person_id = e.person_id
                                AND co.condition_concept_id IN (SELECT concept_id FROM outcome)
                                AND co.condition_start_date > e.index_date
                                AND co.condition_start_date <= e.index_date + 90)
                THEN 1 ELSE 0 END) AS with_outcome
  FROM eligible e
