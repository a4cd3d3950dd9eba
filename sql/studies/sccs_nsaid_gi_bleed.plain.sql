-- The same self-controlled case series as sccs_nsaid_gi_bleed.sql in plain
-- SQL: episode starts with window functions, windows as date arithmetic.
WITH exposure AS (
    SELECT d.person_id, k.concept_code AS exposure, d.drug_exposure_start_date AS s,
           greatest(coalesce(d.drug_exposure_end_date, d.drug_exposure_start_date), d.drug_exposure_start_date) AS e
      FROM ndb.drug_exposure d
      JOIN vocab.concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id
      JOIN vocab.concept k ON k.concept_id = a.ancestor_concept_id AND k.vocabulary_id = 'ATC' AND k.concept_code IN ('M01A', 'N02BE01')
), ordered AS (
    SELECT person_id, exposure, s, max(e) OVER (PARTITION BY person_id, exposure ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prior_end
      FROM exposure
), starts AS (
    SELECT DISTINCT person_id, exposure, s AS start FROM ordered WHERE prior_end IS NULL OR s > prior_end + 180
), events AS (
    SELECT DISTINCT c.person_id, c.condition_start_date AS day
      FROM ndb.condition_occurrence c
      JOIN ndb.observation_period o ON o.person_id = c.person_id
       AND c.condition_start_date BETWEEN o.observation_period_start_date AND o.observation_period_end_date
     WHERE c.condition_concept_id IN (SELECT a.descendant_concept_id FROM vocab.concept_ancestor a JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id WHERE c.vocabulary_id = 'ICD10' AND c.concept_code = 'K92.2')
), cases AS (
    SELECT DISTINCT s.exposure, s.person_id FROM starts s JOIN events e ON e.person_id = s.person_id
), observation AS (
    SELECT o.person_id, o.observation_period_start_date AS obs_start, o.observation_period_end_date AS obs_end
      FROM ndb.observation_period o WHERE o.person_id IN (SELECT person_id FROM cases)
), observed AS (
    SELECT person_id, sum(obs_end - obs_start + 1) AS days FROM observation GROUP BY person_id
), risk AS (
    SELECT s.exposure, s.person_id, sum(greatest(least(s.start + 30, o.obs_end) - greatest(s.start, o.obs_start) + 1, 0)) AS days
      FROM starts s JOIN observation o ON o.person_id = s.person_id
     WHERE s.person_id IN (SELECT person_id FROM cases)
     GROUP BY s.exposure, s.person_id
), classified AS (
    SELECT c.exposure, c.person_id, e.day, max(CASE WHEN e.day >= s.start AND e.day <= s.start + 30 THEN 1 ELSE 0 END) AS in_risk
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
