-- The same study as prevalence_incidence_hypertension.sql in plain SQL.
WITH reference (sex, band, weight) AS (
    VALUES ('M', '0-39', 24000), ('M', '40-64', 21000), ('M', '65-74', 8700), ('M', '75+', 7600),
           ('F', '0-39', 23000), ('F', '40-64', 21000), ('F', '65-74', 9500), ('F', '75+', 11000)
), years (year) AS (
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
      JOIN ndb.observation_period o ON make_date(y.year, 7, 1) BETWEEN o.observation_period_start_date AND o.observation_period_end_date
      JOIN persons p ON p.person_id = o.person_id
     GROUP BY y.year, p.person_id, p.sex, band
), records AS (
    SELECT person_id, condition_start_date AS day FROM ndb.condition_occurrence WHERE condition_concept_id IN (SELECT a.descendant_concept_id FROM vocab.concept_ancestor a JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id WHERE c.vocabulary_id = 'ICD10' AND c.concept_code = 'I10')
), record_years AS (
    SELECT DISTINCT person_id, CAST(date_part('year', day) AS BIGINT) AS year FROM records
), first_record AS (
    SELECT person_id, min(day) AS first_day FROM records GROUP BY person_id
), flagged AS (
    SELECT p.year, p.sex, p.band,
           CASE WHEN ry.person_id IS NOT NULL THEN 1 ELSE 0 END AS prevalent,
           CASE WHEN make_date(p.year, 1, 1) >= p.obs_start + 365
                 AND (f.first_day IS NULL OR f.first_day >= make_date(p.year, 1, 1)) THEN 1 ELSE 0 END AS at_risk,
           CASE WHEN f.first_day BETWEEN make_date(p.year, 1, 1) AND make_date(p.year, 12, 31)
                 AND make_date(p.year, 1, 1) >= p.obs_start + 365 THEN 1 ELSE 0 END AS incident
      FROM population p
      LEFT JOIN first_record f ON f.person_id = p.person_id
      LEFT JOIN record_years ry ON ry.person_id = p.person_id AND ry.year = p.year
), strata AS (
    SELECT year, sex, band, count(*) AS persons, sum(prevalent) AS prevalent, sum(at_risk) AS at_risk, sum(incident) AS incident
      FROM flagged GROUP BY year, sex, band
)
SELECT s.year,
       sum(s.persons) AS persons,
       sum(s.prevalent) AS prevalent,
       round(CAST(sum(s.prevalent) AS DOUBLE) / sum(s.persons), 6) AS crude_prevalence,
       round(sum(CAST(s.prevalent AS DOUBLE) / s.persons * r.weight) / sum(r.weight), 6) AS standardized_prevalence,
       sum(s.at_risk) AS at_risk,
       sum(s.incident) AS incident,
       round(CAST(sum(s.incident) AS DOUBLE) / sum(s.at_risk), 6) AS crude_incidence,
       round(sum(CASE WHEN s.at_risk > 0 THEN CAST(s.incident AS DOUBLE) / s.at_risk ELSE 0 END * r.weight) / sum(r.weight), 6) AS standardized_incidence,
       round(sum(CAST(s.prevalent AS DOUBLE) / s.persons * r.weight) / sum(r.weight)
             - 1.96 * sqrt(sum(CAST(r.weight AS DOUBLE) * r.weight * (CAST(s.prevalent AS DOUBLE) / s.persons) * (1 - CAST(s.prevalent AS DOUBLE) / s.persons) / s.persons)) / sum(r.weight), 6) AS standardized_prevalence_lower_95,
       round(sum(CAST(s.prevalent AS DOUBLE) / s.persons * r.weight) / sum(r.weight)
             + 1.96 * sqrt(sum(CAST(r.weight AS DOUBLE) * r.weight * (CAST(s.prevalent AS DOUBLE) / s.persons) * (1 - CAST(s.prevalent AS DOUBLE) / s.persons) / s.persons)) / sum(r.weight), 6) AS standardized_prevalence_upper_95,
       round(sum(CASE WHEN s.at_risk > 0 THEN CAST(s.incident AS DOUBLE) / s.at_risk ELSE 0 END * r.weight) / sum(r.weight)
             - 1.96 * sqrt(sum(CASE WHEN s.at_risk > 0 THEN CAST(r.weight AS DOUBLE) * r.weight * (CAST(s.incident AS DOUBLE) / s.at_risk) * (1 - CAST(s.incident AS DOUBLE) / s.at_risk) / s.at_risk ELSE 0 END)) / sum(r.weight), 6) AS standardized_incidence_lower_95,
       round(sum(CASE WHEN s.at_risk > 0 THEN CAST(s.incident AS DOUBLE) / s.at_risk ELSE 0 END * r.weight) / sum(r.weight)
             + 1.96 * sqrt(sum(CASE WHEN s.at_risk > 0 THEN CAST(r.weight AS DOUBLE) * r.weight * (CAST(s.incident AS DOUBLE) / s.at_risk) * (1 - CAST(s.incident AS DOUBLE) / s.at_risk) / s.at_risk ELSE 0 END)) / sum(r.weight), 6) AS standardized_incidence_upper_95
  FROM strata s JOIN reference r ON r.sex = s.sex AND r.band = s.band
 GROUP BY s.year
 ORDER BY s.year
