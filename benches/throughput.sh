#!/usr/bin/env bash
# Many small queries: pgbench, 32 clients, extended protocol, a grouped
# count over the person table of a 5,000-person store, against Tsunagu and
# (when PGHOST/PGPORT/PGUSER reach one) PostgreSQL holding the same rows.
# Both in one run, so their ratio is measured on the same machine load.
#
#   PGHOST=/tmp/pg PGPORT=55432 PGUSER=postgres benches/throughput.sh
#
# Tsunagu is measured for a steward and for an analyst (whose answers pass
# the release: k, noise, rounding), with the extended protocol (`-M
# extended`: Parse, Bind, Execute of an unnamed statement each time) and
# with named prepared statements (`-M prepared`).
set -euo pipefail
BIN=${BIN:-target/release/tsunagu}
D=${WORK:-/tmp/tsunagu-throughput}
SECONDS_EACH=${SECONDS_EACH:-20}
CLIENTS=${CLIENTS:-32}
mkdir -p "$D"
[ -d "$D/store" ] || "$BIN" generate --persons 5000 --seed 42 --out "$D/store" >/dev/null
rm -f "$D/server.toml"
for who in steward analyst; do
  printf 'bench-secret\n' | "$BIN" user add "$who" --role "$who" --config "$D/server.toml" >/dev/null
done
cat >> "$D/server.toml" <<EOF

[limits.analyst]
max_connections_per_user = 40
max_concurrent_statements_per_user = 40

[limits.steward]
max_connections_per_user = 40
max_concurrent_statements_per_user = 40
EOF
echo "SELECT gender_concept_id, count(*) FROM ndb.person GROUP BY gender_concept_id;" > "$D/query.sql"

"$BIN" serve --store "$D/store" --state "$D/state" --config "$D/server.toml" \
  --listen 127.0.0.1:55497 > "$D/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null' EXIT
until grep -q "listening" "$D/serve.log"; do sleep 1; done

bench() { # name, connection string, mode
  local tps
  tps=$(PGPASSWORD=${3:-} pgbench -n -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" -M "$2" \
    -f "$D/query.sql" "$1" 2>&1 | tee "$D/last.txt" | awk '/^tps/ {print $3}')
  local failed
  failed=$(awk '/failed transactions/ {print $5}' "$D/last.txt")
  echo "${tps:-error} ${failed:-?}"
}

echo "engine role mode tps failed"
if [ -n "${PGHOST:-}" ]; then
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS tsunagu_throughput" 2>/dev/null
  psql -X -q -d postgres -c "CREATE DATABASE tsunagu_throughput"
  "$BIN" sql --store "$D/store" --state "$D/state" --csv \
    "SELECT person_key, gender_concept_id, year_of_birth, month_of_birth, day_of_birth, gender_source_value, location_id FROM ndb.person" \
    > "$D/person.csv"
  psql -X -q -d tsunagu_throughput <<EOF
CREATE SCHEMA ndb;
CREATE TABLE ndb.person (person_key text, gender_concept_id bigint, year_of_birth bigint,
  month_of_birth bigint, day_of_birth bigint, gender_source_value text, location_id bigint);
\copy ndb.person FROM '$D/person.csv' CSV HEADER
ANALYZE ndb.person;
EOF
  for mode in extended prepared; do
    echo "postgresql - $mode $(bench "host=$PGHOST port=$PGPORT dbname=tsunagu_throughput user=$PGUSER" $mode)"
  done
fi
for who in steward analyst; do
  for mode in extended prepared; do
    echo "tsunagu $who $mode $(bench "host=127.0.0.1 port=55497 dbname=tsunagu user=$who sslmode=disable" $mode bench-secret)"
  done
done
