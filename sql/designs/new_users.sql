-- New users of a target drug against new users of an active comparator:
-- risk of an outcome in a window after the first dispensing.
--
-- New user: the first dispensing of the drug (any code of its set), with at
-- least `washout` days of observation before it and no dispensing of either
-- drug in those days. Risk window: days risk_start..risk_end after that
-- index date. Estimate: the risk ratio of the target arm against the
-- comparator arm with Katz's 95% interval on its logarithm.
--
-- param target codes - drug codes of the target, for example 'ATC:M01A'
-- param comparator codes - drug codes of the active comparator, for example 'ATC:N02BE01'
-- param outcome codes - condition codes of the outcome, for example 'ICD10:K92.2'
-- param washout integer 180 days of observation, free of both drugs, before the index date
-- param risk_start integer 0 first day of the risk window, counted from the index date
-- param risk_end integer 30 last day of the risk window
-- param source source ndb the source schema holding the dispensings and conditions
WITH dispensing AS (
    SELECT d.person_id, d.drug_exposure_start_date AS day,
           CASE WHEN in_concept_set(d.drug_concept_id, {target}) THEN 'target' ELSE 'comparator' END AS arm
      FROM {source}.drug_exposure d
     WHERE in_concept_set(d.drug_concept_id, {target}) OR in_concept_set(d.drug_concept_id, {comparator})
), first_use AS (
    SELECT person_id, arm, min(day) AS index_date FROM dispensing GROUP BY person_id, arm
), new_users AS (
    SELECT f.person_id, f.arm, f.index_date, o.observation_period_end_date AS obs_end
      FROM first_use f
      JOIN {source}.observation_period o
        ON o.person_id = f.person_id
       AND in_window(f.index_date, o.observation_period_start_date, {washout}, 100000)
       AND f.index_date <= o.observation_period_end_date
     WHERE NOT EXISTS (
        SELECT 1 FROM dispensing p
         WHERE p.person_id = f.person_id AND in_window(p.day, f.index_date, -{washout}, -1))
), outcomes AS (
    SELECT DISTINCT n.person_id, n.arm
      FROM new_users n
      JOIN {source}.condition_occurrence c ON c.person_id = n.person_id
     WHERE in_concept_set(c.condition_concept_id, {outcome})
       AND in_window(c.condition_start_date, n.index_date, {risk_start}, {risk_end})
), arms AS (
    SELECT n.arm, count(*) AS persons, count(o.person_id) AS cases,
           sum(window_days(n.index_date, {risk_start}, {risk_end}, n.index_date, n.obs_end)) AS days_at_risk
      FROM new_users n LEFT JOIN outcomes o ON o.person_id = n.person_id AND o.arm = n.arm
     GROUP BY n.arm
), reference AS (
    SELECT CAST(cases AS DOUBLE) AS c0, CAST(persons AS DOUBLE) AS n0 FROM arms WHERE arm = 'comparator'
), ratios AS (
    SELECT a.arm, a.persons, a.cases, a.days_at_risk,
           CAST(a.cases AS DOUBLE) / a.persons AS risk,
           (CAST(a.cases AS DOUBLE) / a.persons) / (r.c0 / r.n0) AS risk_ratio,
           -- Standard error of log(risk ratio) against the comparator arm.
           CASE WHEN a.arm = 'target'
                THEN sqrt(1.0 / CAST(a.cases AS DOUBLE) - 1.0 / CAST(a.persons AS DOUBLE) + 1.0 / r.c0 - 1.0 / r.n0) END AS se
      FROM arms a CROSS JOIN reference r
)
SELECT arm, CASE WHEN arm = 'target' THEN {target.label} ELSE {comparator.label} END AS codes,
       persons, cases, days_at_risk, risk, risk_ratio,
       round(exp(ln(risk_ratio) - 1.96 * se), 4) AS lower_95,
       round(exp(ln(risk_ratio) + 1.96 * se), 4) AS upper_95
  FROM ratios
