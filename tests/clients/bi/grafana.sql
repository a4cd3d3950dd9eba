SELECT current_setting('server_version_num')::int/100 as version;
select quote_ident(table_schema) || '.' || quote_ident(table_name) as "table" from information_schema.tables where quote_ident(table_schema) not in ('information_schema', 'pg_catalog', '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_internal', '_timescaledb_config', 'timescaledb_information', 'timescaledb_experimental') and table_type = 'BASE TABLE' order by 1;
select quote_ident(column_name) as "column", data_type as "type" from information_schema.columns where quote_ident(table_schema) = 'ndb' and quote_ident(table_name) = 'person';
SELECT extract(year from observation_period_start_date)::int AS "time", count(DISTINCT person_id) AS "persons" FROM ndb.observation_period GROUP BY 1 ORDER BY 1;
