-- Linked outcome: persons discharged from a DPC inpatient stay who receive
-- a long-term-care certification within 180 days, by discharge year, with
-- the first certification after each person's first stay.
WITH first_stay AS (
    SELECT person_id, min(visit_end_date) AS discharge
      FROM dpc.visit_occurrence
     WHERE visit_end_date IS NOT NULL
     GROUP BY person_id
), certified AS (
    SELECT s.person_id, s.discharge, min(c.certification_date) AS certified
      FROM first_stay s
      LEFT JOIN kaigo.care_certification c
        ON c.person_id = s.person_id AND c.certification_date >= s.discharge
     GROUP BY s.person_id, s.discharge
)
SELECT extract(year FROM discharge) AS year,
       count(*) AS discharged,
       count(*) FILTER (WHERE certified <= discharge + 180) AS certified_180d,
       avg(CASE WHEN certified <= discharge + 180 THEN certified - discharge END) AS mean_days
  FROM certified
 GROUP BY 1
 ORDER BY 1
