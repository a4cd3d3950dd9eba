-- Self-controlled case series (design: sql/designs/sccs.sql):
-- gastrointestinal haemorrhage (ICD-10 K92.2) in the 30 days after starting
-- an NSAID (ATC M01A) against the rest of each case's observation time,
-- with episodes of NSAID dispensings merged within 180 days. On the
-- synthetic store the planted rate ratio is 3. Acetaminophen (ATC N02BE01),
-- which the generator gives no effect, is the negative-control exposure: its
-- interval should include 1.
SELECT * FROM sccs(exposure => 'ATC:M01A', outcome => 'ICD10:K92.2', risk_start => 0, risk_end => 30, persistence => 180)
UNION ALL
SELECT * FROM sccs(exposure => 'ATC:N02BE01', outcome => 'ICD10:K92.2', risk_start => 0, risk_end => 30, persistence => 180)
ORDER BY exposure
