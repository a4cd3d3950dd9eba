-- The same study as nsaid_gi_bleed_new_users.sql in plain SQL: concept
-- hierarchy through vocab.concept_ancestor, windows as date arithmetic.
WITH dispensing AS (
    SELECT d.person_id, d.drug_exposure_start_date AS day,
           CASE WHEN k.concept_code = 'M01A' THEN 'target' ELSE 'comparator' END AS arm
      FROM ndb.drug_exposure d
      JOIN vocab.concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id
      JOIN vocab.concept k ON k.concept_id = a.ancestor_concept_id AND k.vocabulary_id = 'ATC' AND k.concept_code IN ('M01A', 'N02BE01')
), first_use AS (
    SELECT person_id, arm, min(day) AS index_date FROM dispensing GROUP BY person_id, arm
), new_users AS (
    SELECT f.person_id, f.arm, f.index_date, o.observation_period_end_date AS obs_end
      FROM first_use f
      JOIN ndb.observation_period o
        ON o.person_id = f.person_id
       AND f.index_date >= o.observation_period_start_date + 180
       AND f.index_date <= o.observation_period_end_date
     WHERE NOT EXISTS (
        SELECT 1 FROM dispensing p
         WHERE p.person_id = f.person_id AND p.day >= f.index_date - 180 AND p.day <= f.index_date - 1)
), outcomes AS (
    SELECT DISTINCT n.person_id, n.arm
      FROM new_users n
      JOIN ndb.condition_occurrence c ON c.person_id = n.person_id
     WHERE c.condition_concept_id IN (SELECT a.descendant_concept_id FROM vocab.concept_ancestor a JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id WHERE c.vocabulary_id = 'ICD10' AND c.concept_code = 'K92.2')
       AND c.condition_start_date >= n.index_date AND c.condition_start_date <= n.index_date + 30
), arms AS (
    SELECT n.arm, count(*) AS persons, count(o.person_id) AS cases,
           sum(CASE WHEN n.obs_end >= n.index_date + 30 THEN 31 ELSE n.obs_end - n.index_date + 1 END) AS days_at_risk
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
SELECT arm, CASE WHEN arm = 'target' THEN 'M01A' ELSE 'N02BE01' END AS codes,
       persons, cases, days_at_risk, risk, risk_ratio,
       round(exp(ln(risk_ratio) - 1.96 * se), 4) AS lower_95,
       round(exp(ln(risk_ratio) + 1.96 * se), 4) AS upper_95
  FROM ratios
 ORDER BY arm DESC
