#!/usr/bin/env bash
# The knowledge graph against the vocabulary functions, on one store, one
# run: the first read of graph.edges (the data-derived edges computed), a
# concept's edges against descendants(), and concept_path per row against
# is_a per row. Times are `tsunagu sql --repeat N --timing` (the first run of
# a statement is left out where it includes the computation).
#
#   benches/graph.sh STORE STATE [TSUNAGU]
set -euo pipefail
store=${1:?store folder}
state=${2:?state folder}
bin=${3:-target/release/tsunagu}
runs=5

sql() { "$bin" sql --store "$store" --state "$state" "$@"; }
timed() { # label, repeat, sql
  local label=$1 repeat=$2 q=$3
  local times
  times=$(sql --repeat "$repeat" --timing "$q" 2>&1 >/dev/null | grep -oE '[0-9.]+ ms' | awk '{print $1}' | tr '\n' ' ')
  echo "$label: $times(ms)"
}

concept() { sql --csv "SELECT concept_id FROM vocab.concept WHERE vocabulary_id = '$1' AND concept_code = '$2'" | tail -1; }
k92=$(concept ICD10 K92)
amlo=$(concept 'JP Drug' ING-C08CA01)
m01a=$(concept ATC M01A)

# A fresh graph: the first read computes the data-derived edges.
/usr/bin/time -f "first read of graph.edges: %e s wall, %M KB peak RSS" \
  "$bin" sql --store "$store" --state "$state" \
  "SELECT relationship_id, count(*) FROM graph.edges GROUP BY 1 ORDER BY 1"

timed "edges of a concept (first run computes them)" $((runs + 1)) \
  "SELECT concept_id_2, relationship_id, window_days, value, lower_95, persons FROM graph.edges
   WHERE concept_id_1 = $amlo ORDER BY lower_95 DESC NULLS LAST LIMIT 10"
timed "curated edges of a concept (provenance filter: nothing computed)" $runs \
  "SELECT concept_id_2, relationship_id FROM graph.edges WHERE concept_id_1 = $m01a AND provenance <> 'data'"
timed "a concept's node (name, Japanese name)" $runs \
  "SELECT concept_name, concept_name_ja FROM graph.nodes WHERE concept_id = $amlo"
timed "descendants(M01A)" $runs "SELECT count(*) FROM descendants($m01a)"
timed "descendants(M01A), strongest first" $runs \
  "SELECT concept_id, levels FROM descendants($m01a) ORDER BY levels DESC, concept_id LIMIT 10"
timed "concept_path(ingredient, ATC level 1)" $runs \
  "SELECT concept_path($amlo, (SELECT concept_id FROM vocab.concept WHERE vocabulary_id = 'ATC' AND concept_code = 'C'))"
timed "is_a per condition row" $runs \
  "SELECT count(*) FROM ndb.condition_occurrence WHERE is_a(condition_concept_id, $k92)"
timed "concept_path per condition row" $runs \
  "SELECT count(*) FROM ndb.condition_occurrence WHERE concept_path(condition_concept_id, $k92, 2) IS NOT NULL"
