-- Self-controlled case series: gastrointestinal haemorrhage (ICD-10 K92.2)
-- in the 30 days after starting an NSAID (ATC M01A) against the rest of
-- each case's observation time.
-- A start is the first dispensing of an NSAID episode: NSAID dispensings
-- merged with a 180-day persistence window. Cases: persons with both an
-- event and a start. On the synthetic store the planted rate ratio is 3.
-- Acetaminophen (ATC N02BE01), which the generator gives no effect, is the
-- negative-control exposure: its interval should include 1.
--
-- Estimate: the Mantel-Haenszel rate ratio with each case as a stratum
-- (risk events a, control events b, risk days r, control days c, all days
-- t = r + c): sum(a*c/t) / sum(b*r/t), with the Greenland-Robins variance
-- of its logarithm, sum((a+b)*r*c/t^2) / (sum(a*c/t) * sum(b*r/t)), for a
-- 95% interval.
WITH exposure AS (
    SELECT person_id, 'M01A' AS exposure, drug_exposure_start_date AS s, drug_exposure_end_date AS e
      FROM ndb.drug_exposure WHERE in_concept_set(drug_concept_id, 'ATC', 'M01A')
    UNION ALL
    SELECT person_id, 'N02BE01', drug_exposure_start_date, drug_exposure_end_date
      FROM ndb.drug_exposure WHERE in_concept_set(drug_concept_id, 'ATC', 'N02BE01')
), starts AS (
    SELECT person_id, exposure, ep['episode_start'] AS start
      FROM (SELECT person_id, exposure, unnest(eps) AS ep
              FROM (SELECT person_id, exposure, episodes(s, e, 180) AS eps FROM exposure GROUP BY person_id, exposure))
), events AS (
    SELECT DISTINCT c.person_id, c.condition_start_date AS day
      FROM ndb.condition_occurrence c
      JOIN ndb.observation_period o ON o.person_id = c.person_id
       AND c.condition_start_date BETWEEN o.observation_period_start_date AND o.observation_period_end_date
     WHERE in_concept_set(c.condition_concept_id, 'ICD10', 'K92.2')
), cases AS (
    SELECT DISTINCT s.exposure, s.person_id FROM starts s JOIN events e ON e.person_id = s.person_id
), observation AS (
    SELECT o.person_id, o.observation_period_start_date AS obs_start, o.observation_period_end_date AS obs_end
      FROM ndb.observation_period o WHERE o.person_id IN (SELECT person_id FROM cases)
), observed AS (
    SELECT person_id, sum(obs_end - obs_start + 1) AS days FROM observation GROUP BY person_id
), risk AS (
    SELECT s.exposure, s.person_id, sum(window_days(s.start, 0, 30, o.obs_start, o.obs_end)) AS days
      FROM starts s JOIN observation o ON o.person_id = s.person_id
     WHERE s.person_id IN (SELECT person_id FROM cases)
     GROUP BY s.exposure, s.person_id
), classified AS (
    SELECT c.exposure, c.person_id, e.day, max(CASE WHEN in_window(e.day, s.start, 0, 30) THEN 1 ELSE 0 END) AS in_risk
      FROM cases c
      JOIN events e ON e.person_id = c.person_id
      JOIN starts s ON s.person_id = c.person_id AND s.exposure = c.exposure
     GROUP BY c.exposure, c.person_id, e.day
), per_case AS (
    SELECT k.exposure, k.person_id, k.a, k.b, r.days AS r, t.days - r.days AS c, t.days AS t
      FROM (SELECT exposure, person_id, sum(in_risk) AS a, count(*) - sum(in_risk) AS b FROM classified GROUP BY exposure, person_id) k
      JOIN risk r ON r.exposure = k.exposure AND r.person_id = k.person_id
      JOIN observed t ON t.person_id = k.person_id
), estimate AS (
    SELECT exposure, count(*) AS cases, sum(a) AS risk_events, sum(r) AS risk_days, sum(b) AS control_events, sum(c) AS control_days,
           sum(CAST(a AS DOUBLE) * c / t) AS mh_num,
           sum(CAST(b AS DOUBLE) * r / t) AS mh_den,
           sum(CAST(a + b AS DOUBLE) * r * c / (CAST(t AS DOUBLE) * t)) AS mh_var
      FROM per_case
     GROUP BY exposure
)
SELECT exposure, cases, risk_events, risk_days, control_events, control_days,
       round(mh_num / mh_den, 4) AS rate_ratio,
       round(exp(ln(mh_num / mh_den) - 1.96 * sqrt(mh_var / (mh_num * mh_den))), 4) AS lower_95,
       round(exp(ln(mh_num / mh_den) + 1.96 * sqrt(mh_var / (mh_num * mh_den))), 4) AS upper_95
  FROM estimate
 ORDER BY exposure
