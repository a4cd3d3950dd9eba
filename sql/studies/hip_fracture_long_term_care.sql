-- Linked data (design: sql/designs/linked_outcome.sql): long-term-care
-- certification (kaigo) within a year of an inpatient hip fracture (case-mix
-- admission with main diagnosis S72.0), against persons admitted for
-- pneumonia (J18.9). On the synthetic store about 60% of hip fracture
-- patients are certified.
SELECT * FROM linked_outcome(admission => 'ICD10:S72.0', within_days => 365)
UNION ALL
SELECT * FROM linked_outcome(admission => 'ICD10:J18.9', within_days => 365)
ORDER BY diagnosis DESC
