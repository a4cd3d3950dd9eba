select pg_catalog.version();
select current_schema();
show transaction isolation level;
show standard_conforming_strings;
SELECT pg_catalog.pg_namespace.nspname FROM pg_catalog.pg_namespace WHERE pg_catalog.pg_namespace.nspname NOT LIKE 'pg/_%' ESCAPE '/' ORDER BY pg_catalog.pg_namespace.nspname;
SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace WHERE pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p']) AND pg_catalog.pg_class.relpersistence != 't' AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) = false AND pg_catalog.pg_namespace.nspname = 'ndb';
SELECT year_of_birth / 10 * 10 AS decade, count(DISTINCT person_id) AS persons FROM ndb.person GROUP BY 1 ORDER BY 1 LIMIT 1000;
