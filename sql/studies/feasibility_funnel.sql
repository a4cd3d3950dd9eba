-- Trial feasibility (design: sql/designs/feasibility_funnel.sql): an
-- eligibility funnel for a type 2 diabetes trial: diagnosed with type 2
-- diabetes (ICD-10 E11.9), aged 40-74 at the start of 2023 (born
-- 1949-1982), dispensed metformin (ATC A10BA02) since 2022, observed in
-- claims through 2023, no long-term-care certification.
SELECT * FROM feasibility_funnel(condition => 'ICD10:E11.9', drug => 'ATC:A10BA02', born_from => 1949, born_to => 1982,
                                 drug_from => '2022-01-01', observed_through => '2023-12-31')
 ORDER BY step
