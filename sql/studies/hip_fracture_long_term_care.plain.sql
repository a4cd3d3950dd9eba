-- The same study as hip_fracture_long_term_care.sql in plain SQL.
WITH admissions AS (
    SELECT v.person_id, k.concept_code AS diagnosis, min(v.visit_end_date) AS discharge
      FROM dpc.visit_occurrence v
      JOIN dpc.condition_occurrence c ON c.visit_occurrence_id = v.visit_occurrence_id AND c.person_id = v.person_id
      JOIN vocab.concept_ancestor a ON a.descendant_concept_id = c.condition_concept_id
      JOIN vocab.concept k ON k.concept_id = a.ancestor_concept_id AND k.vocabulary_id = 'ICD10' AND k.concept_code IN ('S72.0', 'J18.9')
     WHERE coalesce(c.condition_status_source_value, 'main') = 'main'
     GROUP BY v.person_id, k.concept_code
), prior_care AS (
    SELECT DISTINCT a.person_id, a.diagnosis
      FROM admissions a JOIN kaigo.care_certification k ON k.person_id = a.person_id
     WHERE k.valid_start_date < a.discharge
), followed AS (
    SELECT a.person_id, a.diagnosis,
           max(CASE WHEN k.valid_start_date >= a.discharge AND k.valid_start_date <= a.discharge + 365 THEN 1 ELSE 0 END) AS certified
      FROM admissions a
      LEFT JOIN kaigo.care_certification k ON k.person_id = a.person_id
     WHERE NOT EXISTS (SELECT 1 FROM prior_care p WHERE p.person_id = a.person_id AND p.diagnosis = a.diagnosis)
     GROUP BY a.person_id, a.diagnosis
), counts AS (
    SELECT diagnosis, count(*) AS persons, sum(certified) AS certified FROM followed GROUP BY diagnosis
)
SELECT diagnosis, persons, certified AS certified_within,
       CAST(certified AS DOUBLE) / persons AS proportion,
       round((CAST(certified AS DOUBLE) / persons + 1.9208 / persons
              - 1.96 * sqrt(CAST(certified AS DOUBLE) / persons * (1 - CAST(certified AS DOUBLE) / persons) / persons + 0.9604 / (CAST(persons AS DOUBLE) * persons)))
             / (1 + 3.8416 / persons), 4) AS lower_95,
       round((CAST(certified AS DOUBLE) / persons + 1.9208 / persons
              + 1.96 * sqrt(CAST(certified AS DOUBLE) / persons * (1 - CAST(certified AS DOUBLE) / persons) / persons + 0.9604 / (CAST(persons AS DOUBLE) * persons)))
             / (1 + 3.8416 / persons), 4) AS upper_95
  FROM counts
 ORDER BY diagnosis DESC
