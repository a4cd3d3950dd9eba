-- Epidemiology (design: sql/designs/prevalence_incidence.sql): prevalence
-- and incidence of hypertension (ICD-10 I10) by year, 2016-2023, crude and
-- directly standardized by sex and age band to Japan's 2020 population.
SELECT * FROM prevalence_incidence(condition => 'ICD10:I10', first_year => 2016, last_year => 2023)
 ORDER BY year
