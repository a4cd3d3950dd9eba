-- Drug safety (design: sql/designs/new_users.sql): new users of NSAIDs
-- (ATC M01A) against new users of acetaminophen (ATC N02BE01),
-- gastrointestinal haemorrhage (ICD-10 K92.2) in the 30 days after the
-- first dispensing, after 180 days of observation free of both drugs.
-- On the synthetic store the planted risk ratio is 3.
SELECT * FROM new_users(target => 'ATC:M01A', comparator => 'ATC:N02BE01', outcome => 'ICD10:K92.2',
                        washout => 180, risk_start => 0, risk_end => 30)
 ORDER BY arm DESC
