-- Drug eras (OHDSI, 30-day persistence window) with window functions: the
-- formulation episodes() replaces. Same semantics: a NULL end or an end
-- before the start counts as the start.
WITH d AS (
    SELECT person_id, drug_concept_id AS c, drug_exposure_start_date AS s,
           CASE WHEN drug_exposure_end_date IS NULL OR drug_exposure_end_date < drug_exposure_start_date
                THEN drug_exposure_start_date ELSE drug_exposure_end_date END AS e
      FROM ndb.drug_exposure
     WHERE drug_exposure_start_date IS NOT NULL
), ordered AS (
    SELECT *, max(e) OVER (PARTITION BY person_id, c ORDER BY s, e
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
      FROM d
), flagged AS (
    SELECT *, CASE WHEN prev_end IS NULL OR s > prev_end + 30 THEN 1 ELSE 0 END AS opens
      FROM ordered
), numbered AS (
    SELECT *, sum(opens) OVER (PARTITION BY person_id, c ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS era
      FROM flagged
), eras AS (
    SELECT person_id, c, era, min(s) AS s, max(e) AS e, count(*) AS n
      FROM numbered GROUP BY person_id, c, era
)
SELECT count(*) AS eras, sum(n) AS records, sum(e - s + 1) AS era_days FROM eras
