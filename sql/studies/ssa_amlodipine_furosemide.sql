-- Sequence symmetry analysis (design: sql/designs/sequence_symmetry.sql):
-- amlodipine (ATC C08CA01) and furosemide (ATC C03CA01), first dispensings
-- of each within 365 days of one another. More amlodipine-first than
-- furosemide-first pairs points to a prescribing cascade (oedema treated
-- with a diuretic); the generator plants one.
SELECT * FROM sequence_symmetry(index_drug => 'ATC:C08CA01', marker_drug => 'ATC:C03CA01', max_days => 365)
