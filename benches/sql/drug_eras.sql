-- Drug eras (OHDSI, 30-day persistence window) over every dispensing of
-- the store, built with the episodes() aggregate.
SELECT count(*) AS eras,
       sum(ep['record_count']) AS records,
       sum(ep['episode_end'] - ep['episode_start'] + 1) AS era_days
  FROM (SELECT unnest(episodes(drug_exposure_start_date, drug_exposure_end_date, 30)) AS ep
          FROM ndb.drug_exposure
         GROUP BY person_id, drug_concept_id)
