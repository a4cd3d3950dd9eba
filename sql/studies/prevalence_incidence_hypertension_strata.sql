-- Epidemiology: prevalence and incidence of hypertension (ICD-10 I10)
-- by year x sex x age band: the strata that
-- prevalence_incidence_hypertension.sql standardizes.
--
-- Population of a year: persons observed on 1 July. Prevalent: a record of
-- the condition in that calendar year. Incident: a first record in that
-- year after at least 365 days of observation without one.
WITH years (year) AS (
    VALUES (2016), (2017), (2018), (2019), (2020), (2021), (2022), (2023)
), persons AS (
    SELECT DISTINCT p.person_id, CASE WHEN g.concept_code = 'M' OR (g.concept_id IS NULL AND p.gender_concept_id = 8507) THEN 'M' ELSE 'F' END AS sex, p.year_of_birth
      FROM ndb.person p LEFT JOIN vocab.concept g ON g.concept_id = p.gender_concept_id AND g.vocabulary_id = 'Gender'
), population AS (
    SELECT y.year, p.person_id, p.sex,
           CASE WHEN y.year - p.year_of_birth < 40 THEN '0-39' WHEN y.year - p.year_of_birth < 65 THEN '40-64'
                WHEN y.year - p.year_of_birth < 75 THEN '65-74' ELSE '75+' END AS band,
           min(o.observation_period_start_date) AS obs_start
      FROM years y
      JOIN (persons p JOIN ndb.observation_period o ON p.person_id = o.person_id)
        ON in_window(make_date(y.year, 7, 1), o.observation_period_start_date, 0, o.observation_period_end_date - o.observation_period_start_date)
     GROUP BY y.year, p.person_id, p.sex, band
), records AS (
    SELECT person_id, condition_start_date AS day FROM ndb.condition_occurrence WHERE in_concept_set(condition_concept_id, 'ICD10', 'I10')
), record_years AS (
    SELECT DISTINCT person_id, CAST(date_part('year', day) AS BIGINT) AS year FROM records
), first_record AS (
    SELECT person_id, min(day) AS first_day FROM records GROUP BY person_id
), flagged AS (
    SELECT p.year, p.sex, p.band,
           CASE WHEN ry.person_id IS NOT NULL THEN 1 ELSE 0 END AS prevalent,
           CASE WHEN in_window(make_date(p.year, 1, 1), p.obs_start, 365, 1000000)
                 AND (f.first_day IS NULL OR f.first_day >= make_date(p.year, 1, 1)) THEN 1 ELSE 0 END AS at_risk,
           CASE WHEN in_window(f.first_day, make_date(p.year, 1, 1), 0, make_date(p.year, 12, 31) - make_date(p.year, 1, 1))
                 AND in_window(make_date(p.year, 1, 1), p.obs_start, 365, 1000000) THEN 1 ELSE 0 END AS incident
      -- Each person-year keeps its row; the smaller sides come first, so
      -- that the hash joins are built on them.
      FROM record_years ry
      RIGHT JOIN (first_record f RIGHT JOIN population p ON f.person_id = p.person_id)
        ON ry.person_id = p.person_id AND ry.year = p.year
), strata AS (
    SELECT year, sex, band, count(*) AS persons, sum(prevalent) AS prevalent, sum(at_risk) AS at_risk, sum(incident) AS incident
      FROM flagged GROUP BY year, sex, band
)
SELECT year, sex, band, persons, prevalent,
       round(CAST(prevalent AS DOUBLE) / persons, 6) AS prevalence,
       at_risk, incident,
       round(CASE WHEN at_risk > 0 THEN CAST(incident AS DOUBLE) / at_risk END, 6) AS incidence
  FROM strata
 ORDER BY year, sex, band
