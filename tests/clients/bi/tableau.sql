set DateStyle to 'ISO';
set extra_float_digits to 2;
select pg_catalog.version();
select oid, typbasetype from pg_type where typname = 'lo';
select nspname from pg_namespace where nspname !~ '^pg_' and nspname <> 'information_schema' order by nspname;
select relname, nspname, relkind from pg_catalog.pg_class c, pg_catalog.pg_namespace n where relkind in ('r', 'v', 'm', 'f', 'p') and nspname not in ('pg_catalog', 'information_schema', 'pg_toast', 'pg_temp_1') and n.oid = relnamespace order by nspname, relname;
select n.nspname, c.relname, a.attname, a.atttypid, t.typname, a.attnum, a.attlen, a.atttypmod, a.attnotnull, c.relhasrules, c.relkind, c.oid, pg_get_expr(d.adbin, d.adrelid), case t.typtype when 'd' then t.typbasetype else 0 end, t.typtypmod, c.relhasoids, '', c.relhassubclass from (((pg_catalog.pg_class c inner join pg_catalog.pg_namespace n on n.oid = c.relnamespace and c.relname like 'person' and n.nspname like 'ndb') inner join pg_catalog.pg_attribute a on (not a.attisdropped) and a.attnum > 0 and a.attrelid = c.oid) inner join pg_catalog.pg_type t on t.oid = a.atttypid) left outer join pg_attrdef d on a.atthasdef and d.adrelid = a.attrelid and d.adnum = a.attnum order by n.nspname, c.relname, attnum;
SELECT "person"."gender_concept_id" AS "gender_concept_id", COUNT(DISTINCT "person"."person_id") AS "ctd:person_id:ok" FROM "ndb"."person" "person" GROUP BY 1;
