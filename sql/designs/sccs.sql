-- Self-controlled case series: the rate of an outcome in a risk window after
-- each start of an exposure against the rest of each case's observation
-- time. A start is the first dispensing of an exposure episode (dispensings
-- merged while gaps stay within the persistence window). Cases: persons with
-- an outcome inside observation and at least one start.
--
-- Estimate: the Mantel-Haenszel rate ratio with each case as a stratum
-- (risk events a, control events b, risk days r, control days c, all days
-- t = r + c): sum(a*c/t) / sum(b*r/t), with the Greenland-Robins variance of
-- its logarithm, sum((a+b)*r*c/t^2) / (sum(a*c/t) * sum(b*r/t)), for a 95%
-- interval.
--
-- param exposure codes - drug codes of the exposure, for example 'ATC:M01A'
-- param outcome codes - condition codes of the outcome, for example 'ICD10:K92.2'
-- param risk_start integer 0 first day of the risk window, counted from the start
-- param risk_end integer 30 last day of the risk window
-- param persistence integer 180 longest gap between dispensings within one episode
-- param source source ndb the source schema holding the dispensings and conditions
WITH exposure AS (
    SELECT person_id, drug_exposure_start_date AS s, drug_exposure_end_date AS e
      FROM {source}.drug_exposure WHERE in_concept_set(drug_concept_id, {exposure})
), starts AS (
    SELECT person_id, ep['episode_start'] AS start
      FROM (SELECT person_id, unnest(eps) AS ep
              FROM (SELECT person_id, episodes(s, e, {persistence}) AS eps FROM exposure GROUP BY person_id))
), events AS (
    SELECT DISTINCT c.person_id, c.condition_start_date AS day
      FROM {source}.condition_occurrence c
      JOIN {source}.observation_period o ON o.person_id = c.person_id
       AND c.condition_start_date BETWEEN o.observation_period_start_date AND o.observation_period_end_date
     WHERE in_concept_set(c.condition_concept_id, {outcome})
), cases AS (
    SELECT DISTINCT s.person_id FROM starts s JOIN events e ON e.person_id = s.person_id
), observation AS (
    SELECT o.person_id, o.observation_period_start_date AS obs_start, o.observation_period_end_date AS obs_end
      FROM {source}.observation_period o WHERE o.person_id IN (SELECT person_id FROM cases)
), observed AS (
    SELECT person_id, sum(obs_end - obs_start + 1) AS days FROM observation GROUP BY person_id
), risk AS (
    SELECT s.person_id, sum(window_days(s.start, {risk_start}, {risk_end}, o.obs_start, o.obs_end)) AS days
      FROM starts s JOIN observation o ON o.person_id = s.person_id
     GROUP BY s.person_id
), classified AS (
    SELECT e.person_id, e.day, max(CASE WHEN in_window(e.day, s.start, {risk_start}, {risk_end}) THEN 1 ELSE 0 END) AS in_risk
      FROM cases c
      JOIN events e ON e.person_id = c.person_id
      JOIN starts s ON s.person_id = c.person_id
     GROUP BY e.person_id, e.day
), per_case AS (
    SELECT k.person_id, k.a, k.b, r.days AS r, t.days - r.days AS c, t.days AS t
      FROM (SELECT person_id, sum(in_risk) AS a, count(*) - sum(in_risk) AS b FROM classified GROUP BY person_id) k
      JOIN risk r ON r.person_id = k.person_id
      JOIN observed t ON t.person_id = k.person_id
), estimate AS (
    SELECT count(*) AS cases, sum(a) AS risk_events, sum(r) AS risk_days, sum(b) AS control_events, sum(c) AS control_days,
           sum(CAST(a AS DOUBLE) * c / t) AS mh_num,
           sum(CAST(b AS DOUBLE) * r / t) AS mh_den,
           sum(CAST(a + b AS DOUBLE) * r * c / (CAST(t AS DOUBLE) * t)) AS mh_var
      FROM per_case
)
SELECT {exposure.label} AS exposure, cases, risk_events, risk_days, control_events, control_days,
       round(mh_num / mh_den, 4) AS rate_ratio,
       round(exp(ln(mh_num / mh_den) - 1.96 * sqrt(mh_var / (mh_num * mh_den))), 4) AS lower_95,
       round(exp(ln(mh_num / mh_den) + 1.96 * sqrt(mh_var / (mh_num * mh_den))), 4) AS upper_95
  FROM estimate
