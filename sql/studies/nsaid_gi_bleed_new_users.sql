-- Drug safety: new users of NSAIDs (ATC M01A) against new users of
-- acetaminophen (ATC N02BE01), gastrointestinal haemorrhage (ICD-10 K92.2)
-- in the 30 days after the first dispensing.
--
-- New user: the first dispensing of the drug class, with at least 180 days
-- of continuous observation before it and no dispensing of either class in
-- those 180 days. Risk window: days 0..30 after the index date.
-- On the synthetic store the planted risk ratio is 3. The 95% interval is
-- Katz's, on the log risk ratio against the acetaminophen arm.
WITH dispensing AS (
    SELECT d.person_id, d.drug_exposure_start_date AS day,
           CASE WHEN in_concept_set(d.drug_concept_id, 'ATC', 'M01A') THEN 'nsaid' ELSE 'acetaminophen' END AS arm
      FROM ndb.drug_exposure d
     WHERE in_concept_set(d.drug_concept_id, 'ATC', 'M01A', 'N02BE01')
), first_use AS (
    SELECT person_id, arm, min(day) AS index_date FROM dispensing GROUP BY person_id, arm
), new_users AS (
    SELECT f.person_id, f.arm, f.index_date, o.observation_period_end_date AS obs_end
      FROM first_use f
      JOIN ndb.observation_period o
        ON o.person_id = f.person_id
       AND in_window(f.index_date, o.observation_period_start_date, 180, 100000)
       AND f.index_date <= o.observation_period_end_date
     WHERE NOT EXISTS (
        SELECT 1 FROM dispensing p
         WHERE p.person_id = f.person_id AND in_window(p.day, f.index_date, -180, -1))
), outcomes AS (
    SELECT DISTINCT n.person_id, n.arm
      FROM new_users n
      JOIN ndb.condition_occurrence c ON c.person_id = n.person_id
     WHERE in_concept_set(c.condition_concept_id, 'ICD10', 'K92.2')
       AND in_window(c.condition_start_date, n.index_date, 0, 30)
), arms AS (
    SELECT n.arm, count(*) AS persons, count(o.person_id) AS cases,
           sum(window_days(n.index_date, 0, 30, n.index_date, n.obs_end)) AS days_at_risk
      FROM new_users n LEFT JOIN outcomes o ON o.person_id = n.person_id AND o.arm = n.arm
     GROUP BY n.arm
), reference AS (
    SELECT CAST(cases AS DOUBLE) AS c0, CAST(persons AS DOUBLE) AS n0 FROM arms WHERE arm = 'acetaminophen'
), ratios AS (
    SELECT a.arm, a.persons, a.cases, a.days_at_risk,
           CAST(a.cases AS DOUBLE) / a.persons AS risk,
           (CAST(a.cases AS DOUBLE) / a.persons) / (r.c0 / r.n0) AS risk_ratio,
           -- Standard error of log(risk ratio) against the reference arm.
           CASE WHEN a.arm <> 'acetaminophen'
                THEN sqrt(1.0 / a.cases - 1.0 / a.persons + 1.0 / r.c0 - 1.0 / r.n0) END AS se
      FROM arms a CROSS JOIN reference r
)
SELECT arm, persons, cases, days_at_risk, risk, risk_ratio,
       round(exp(ln(risk_ratio) - 1.96 * se), 4) AS lower_95,
       round(exp(ln(risk_ratio) + 1.96 * se), 4) AS upper_95
  FROM ratios
 ORDER BY arm DESC
