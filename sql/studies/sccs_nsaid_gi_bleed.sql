-- Self-controlled case series: gastrointestinal haemorrhage (ICD-10 K92.2)
-- in the 30 days after starting an NSAID (ATC M01A) against the rest of
-- each case's observation time.
-- A start is the first dispensing of an NSAID episode: NSAID dispensings
-- merged with a 180-day persistence window. Cases: persons with both an
-- event and a start. On the synthetic store the planted rate ratio is 3.
WITH nsaid AS (
    SELECT person_id, drug_exposure_start_date AS s, drug_exposure_end_date AS e
      FROM ndb.drug_exposure WHERE in_concept_set(drug_concept_id, 'ATC', 'M01A')
), starts AS (
    SELECT person_id, ep['episode_start'] AS start
      FROM (SELECT person_id, unnest(eps) AS ep
              FROM (SELECT person_id, episodes(s, e, 180) AS eps FROM nsaid GROUP BY person_id))
), events AS (
    SELECT DISTINCT c.person_id, c.condition_start_date AS day
      FROM ndb.condition_occurrence c
      JOIN ndb.observation_period o ON o.person_id = c.person_id
       AND c.condition_start_date BETWEEN o.observation_period_start_date AND o.observation_period_end_date
     WHERE in_concept_set(c.condition_concept_id, 'ICD10', 'K92.2')
), cases AS (
    SELECT DISTINCT person_id FROM events WHERE person_id IN (SELECT person_id FROM starts)
), observation AS (
    SELECT o.person_id, o.observation_period_start_date AS obs_start, o.observation_period_end_date AS obs_end
      FROM ndb.observation_period o WHERE o.person_id IN (SELECT person_id FROM cases)
), risk_time AS (
    SELECT sum(window_days(s.start, 0, 30, o.obs_start, o.obs_end)) AS days
      FROM starts s JOIN observation o ON o.person_id = s.person_id
), all_time AS (
    SELECT sum(obs_end - obs_start + 1) AS days FROM observation
), classified AS (
    SELECT e.person_id, e.day, max(CASE WHEN in_window(e.day, s.start, 0, 30) THEN 1 ELSE 0 END) AS in_risk
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
