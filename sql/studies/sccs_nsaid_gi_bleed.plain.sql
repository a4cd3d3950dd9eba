-- The same self-controlled case series as sccs_nsaid_gi_bleed.sql in plain
-- SQL: episode starts with window functions, windows as date arithmetic.
WITH nsaid AS (
    SELECT d.person_id, d.drug_exposure_start_date AS s, greatest(coalesce(d.drug_exposure_end_date, d.drug_exposure_start_date), d.drug_exposure_start_date) AS e
      FROM ndb.drug_exposure d
      JOIN vocab.concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id AND a.ancestor_concept_id = (SELECT concept_id FROM vocab.concept WHERE vocabulary_id = 'ATC' AND concept_code = 'M01A')
), ordered AS (
    SELECT person_id, s, max(e) OVER (PARTITION BY person_id ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prior_end
      FROM nsaid
), starts AS (
    SELECT DISTINCT person_id, s AS start FROM ordered WHERE prior_end IS NULL OR s > prior_end + 180
), events AS (
    SELECT DISTINCT c.person_id, c.condition_start_date AS day
      FROM ndb.condition_occurrence c
      JOIN ndb.observation_period o ON o.person_id = c.person_id
       AND c.condition_start_date BETWEEN o.observation_period_start_date AND o.observation_period_end_date
     WHERE c.condition_concept_id IN (SELECT a.descendant_concept_id FROM vocab.concept_ancestor a JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id WHERE c.vocabulary_id = 'ICD10' AND c.concept_code = 'K92.2')
), cases AS (
    SELECT DISTINCT person_id FROM events WHERE person_id IN (SELECT person_id FROM starts)
), observation AS (
    SELECT o.person_id, o.observation_period_start_date AS obs_start, o.observation_period_end_date AS obs_end
      FROM ndb.observation_period o WHERE o.person_id IN (SELECT person_id FROM cases)
), risk_time AS (
    SELECT sum(greatest(least(s.start + 30, o.obs_end) - greatest(s.start, o.obs_start) + 1, 0)) AS days
      FROM starts s JOIN observation o ON o.person_id = s.person_id
), all_time AS (
    SELECT sum(obs_end - obs_start + 1) AS days FROM observation
), classified AS (
    SELECT e.person_id, e.day, max(CASE WHEN e.day >= s.start AND e.day <= s.start + 30 THEN 1 ELSE 0 END) AS in_risk
      FROM events e JOIN starts s ON s.person_id = e.person_id
     WHERE e.person_id IN (SELECT person_id FROM cases)
     GROUP BY e.person_id, e.day
)
SELECT count(DISTINCT person_id) AS cases,
       sum(in_risk) AS risk_events,
       (SELECT days FROM risk_time) AS risk_days,
       count(*) - sum(in_risk) AS control_events,
       (SELECT days FROM all_time) - (SELECT days FROM risk_time) AS control_days,
       (CAST(sum(in_risk) AS DOUBLE) / (SELECT days FROM risk_time))
         / (CAST(count(*) - sum(in_risk) AS DOUBLE) / ((SELECT days FROM all_time) - (SELECT days FROM risk_time))) AS rate_ratio
  FROM classified
