-- Linked data: long-term-care certification (kaigo) within a year of an
-- inpatient hip fracture (case-mix admission with main diagnosis S72.0),
-- against persons of the same ages admitted for pneumonia (J18.9).
-- On the synthetic store about 60% of hip fracture patients are certified.
-- Main diagnosis: condition_status_source_value = 'main' (docs/DATA_MODEL.md);
-- on a store without that column every diagnosis of the stay counts.
WITH admissions AS (
    SELECT v.person_id,
           CASE WHEN in_concept_set(c.condition_concept_id, 'ICD10', 'S72.0') THEN 'S72.0' ELSE 'J18.9' END AS diagnosis,
           min(v.visit_end_date) AS discharge
      FROM dpc.visit_occurrence v
      JOIN dpc.condition_occurrence c ON c.visit_occurrence_id = v.visit_occurrence_id AND c.person_id = v.person_id
     WHERE coalesce(c.condition_status_source_value, 'main') = 'main'
       AND in_concept_set(c.condition_concept_id, 'ICD10', 'S72.0', 'J18.9')
     GROUP BY 1, 2
), prior_care AS (
    SELECT DISTINCT a.person_id, a.diagnosis
      FROM admissions a JOIN kaigo.care_certification k ON k.person_id = a.person_id
     WHERE k.valid_start_date < a.discharge
), followed AS (
    SELECT a.person_id, a.diagnosis,
           max(CASE WHEN in_window(k.valid_start_date, a.discharge, 0, 365) THEN 1 ELSE 0 END) AS certified
      FROM admissions a
      LEFT JOIN kaigo.care_certification k ON k.person_id = a.person_id
     WHERE NOT EXISTS (SELECT 1 FROM prior_care p WHERE p.person_id = a.person_id AND p.diagnosis = a.diagnosis)
     GROUP BY a.person_id, a.diagnosis
)
SELECT diagnosis, count(*) AS persons, sum(certified) AS certified_within_a_year,
       CAST(sum(certified) AS DOUBLE) / count(*) AS proportion
  FROM followed
 GROUP BY diagnosis
 ORDER BY diagnosis DESC
