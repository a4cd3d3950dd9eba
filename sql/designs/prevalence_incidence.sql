-- Prevalence and incidence of a condition by calendar year, crude and
-- directly standardized by sex and age band to a reference population
-- (Japan, 2020 census, thousands, rounded).
--
-- Population of a year: persons observed on 1 July. Prevalent: a record of
-- the condition in that calendar year. Incident: a first record in that
-- year after at least 365 days of observation without one. The
-- standardized rates come with normal 95% intervals (variance
-- sum(w^2 p(1-p)/n) / sum(w)^2 over the strata). Sex: the Gender concept
-- coded 'M' in the store's vocabulary, or OMOP's 8507 where the vocabulary
-- has no Gender concepts.
--
-- param condition codes - condition codes, for example 'ICD10:I10'
-- param first_year integer 2016 first calendar year
-- param last_year integer 2023 last calendar year
-- param source source ndb the source schema holding persons, observation and conditions
WITH reference (sex, band, weight) AS (
    VALUES ('M', '0-39', 24000), ('M', '40-64', 21000), ('M', '65-74', 8700), ('M', '75+', 7600),
           ('F', '0-39', 23000), ('F', '40-64', 21000), ('F', '65-74', 9500), ('F', '75+', 11000)
), years (year) AS (
    SELECT year FROM generate_series({first_year}, {last_year}) AS year
), persons AS (
    SELECT DISTINCT p.person_id, CASE WHEN g.concept_code = 'M' OR (g.concept_id IS NULL AND p.gender_concept_id = 8507) THEN 'M' ELSE 'F' END AS sex, p.year_of_birth
      FROM {source}.person p LEFT JOIN vocab.concept g ON g.concept_id = p.gender_concept_id AND g.vocabulary_id = 'Gender'
), population AS (
    SELECT y.year, p.person_id, p.sex,
           CASE WHEN y.year - p.year_of_birth < 40 THEN '0-39' WHEN y.year - p.year_of_birth < 65 THEN '40-64'
                WHEN y.year - p.year_of_birth < 75 THEN '65-74' ELSE '75+' END AS band,
           min(o.observation_period_start_date) AS obs_start
      FROM years y
      JOIN (persons p JOIN {source}.observation_period o ON p.person_id = o.person_id)
        ON in_window(make_date(y.year, 7, 1), o.observation_period_start_date, 0, o.observation_period_end_date - o.observation_period_start_date)
     GROUP BY y.year, p.person_id, p.sex, band
), records AS (
    SELECT person_id, condition_start_date AS day FROM {source}.condition_occurrence WHERE in_concept_set(condition_concept_id, {condition})
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
