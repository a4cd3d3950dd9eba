-- Each person's first dispensing of every drug concept, by row_number(),
-- then counted by year of first use.
WITH ranked AS (
    SELECT person_id, drug_concept_id, drug_exposure_start_date,
           row_number() OVER (PARTITION BY person_id, drug_concept_id
                              ORDER BY drug_exposure_start_date, drug_exposure_id) AS rn
      FROM ndb.drug_exposure
)
SELECT extract(year FROM drug_exposure_start_date) AS year, count(*) AS first_uses
  FROM ranked
 WHERE rn = 1
 GROUP BY 1
 ORDER BY 1
