#!/usr/bin/env bash
# A year of monthly deliveries into a served store: time from a file landing
# to the server answering with it, and the server's memory. Prepare $WORK/first
# (the store with ndb/drug_exposure as a folder holding 2010-2022) and
# $WORK/months/2023-MM.parquet (the twelve months of 2023), e.g. with DuckDB.
set -euo pipefail
BIN=${BIN:-target/release/tsunagu}
D=${WORK:-/work/bench/deliv}
S=$D/first; ST=$D/state
rm -f $S/ndb/drug_exposure/2023-*.parquet
rm -rf $ST $D/server.toml
printf 'steward-secret\n' | $BIN user add sam --role steward --config $D/server.toml >/dev/null 2>&1
start=$(date +%s.%N)
$BIN refresh --store $S --state $ST
echo "first derive: $(echo "$(date +%s.%N) - $start" | bc) s, state $(du -sh $ST | cut -f1)"
$BIN serve --store $S --state $ST --config $D/server.toml --listen 127.0.0.1:55499 --http 127.0.0.1:58099 > $D/serve.log 2>&1 &
PID=$!
trap "kill $PID" EXIT
sleep 5
until grep -q "listening" $D/serve.log; do sleep 1; done
Q() { PGPASSWORD=steward-secret psql "host=127.0.0.1 port=55499 dbname=tsunagu user=sam sslmode=disable" -XAtc "$1"; }
rows=$(Q "SELECT count(*) FROM ndb.drug_exposure")
echo "month rows_visible seconds_to_visible rss_mb"
echo "0 $rows - $(( $(grep VmRSS /proc/$PID/status | awk '{print $2}') / 1024 ))"
for m in 01 02 03 04 05 06 07 08 09 10 11 12; do
  t0=$(date +%s.%N)
  cp $D/months/2023-$m.parquet $S/ndb/drug_exposure/
  while true; do
    now=$(Q "SELECT count(*) FROM ndb.drug_exposure")
    [ "$now" != "$rows" ] && break
    sleep 0.2
  done
  rows=$now
  echo "$m $rows $(echo "$(date +%s.%N) - $t0" | bc) $(( $(grep VmRSS /proc/$PID/status | awk '{print $2}') / 1024 ))"
done
grep "store changed" $D/serve.log | tail -2 || true
du -sh $ST
