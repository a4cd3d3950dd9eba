-- Linked sources: a long-term-care certification within `within_days` of
-- discharge after an inpatient admission with a main diagnosis, for persons
-- without a certification before that discharge. Admissions come from an
-- inpatient case-mix (DPC-shaped) source, certifications from a long-term
-- care source; the store's linkage gives both the same person_id. Main
-- diagnosis: condition_status_source_value = 'main' (docs/DATA_MODEL.md);
-- on a store without that CDM column (shown as NULL) every diagnosis of the
-- stay counts.
-- Estimate: the proportion certified with Wilson's 95% interval.
--
-- param admission codes - condition codes of the main diagnosis, for example 'ICD10:S72.0'
-- param within_days integer 365 days after discharge in which a certification counts
-- param inpatient source dpc the inpatient source schema (visits and diagnoses)
-- param care source kaigo the long-term-care source schema (care_certification)
WITH admissions AS (
    SELECT v.person_id, min(v.visit_end_date) AS discharge
      FROM {inpatient}.visit_occurrence v
      JOIN {inpatient}.condition_occurrence c ON c.visit_occurrence_id = v.visit_occurrence_id AND c.person_id = v.person_id
     WHERE coalesce(c.condition_status_source_value, 'main') = 'main'
       AND in_concept_set(c.condition_concept_id, {admission})
     GROUP BY v.person_id
), prior_care AS (
    SELECT DISTINCT a.person_id
      FROM admissions a JOIN {care}.care_certification k ON k.person_id = a.person_id
     WHERE k.valid_start_date < a.discharge
), followed AS (
    SELECT a.person_id,
           max(CASE WHEN in_window(k.valid_start_date, a.discharge, 0, {within_days}) THEN 1 ELSE 0 END) AS certified
      FROM admissions a
      LEFT JOIN {care}.care_certification k ON k.person_id = a.person_id
     WHERE NOT EXISTS (SELECT 1 FROM prior_care p WHERE p.person_id = a.person_id)
     GROUP BY a.person_id
), counts AS (
    SELECT count(*) AS persons, sum(certified) AS certified FROM followed
)
SELECT {admission.label} AS diagnosis, persons, certified AS certified_within,
       CAST(certified AS DOUBLE) / persons AS proportion,
       round((CAST(certified AS DOUBLE) / persons + 1.9208 / persons
              - 1.96 * sqrt(CAST(certified AS DOUBLE) / persons * (1 - CAST(certified AS DOUBLE) / persons) / persons + 0.9604 / (CAST(persons AS DOUBLE) * persons)))
             / (1 + 3.8416 / persons), 4) AS lower_95,
       round((CAST(certified AS DOUBLE) / persons + 1.9208 / persons
              + 1.96 * sqrt(CAST(certified AS DOUBLE) / persons * (1 - CAST(certified AS DOUBLE) / persons) / persons + 0.9604 / (CAST(persons AS DOUBLE) * persons)))
             / (1 + 3.8416 / persons), 4) AS upper_95
  FROM counts
