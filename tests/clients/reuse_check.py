"""Checks that statements run again (kept plans, kept answers) give what a
fresh computation gives, with psycopg 3: unnamed extended-protocol
statements, named prepared ones and simple queries, with changing
parameters, search_path, role, cohorts and volatile functions. Counts are
checked against rows the steward fetched and counted here (by hand), not
against the engine's own aggregates.
Usage: reuse_check.py STEWARD_CONNINFO RUNS. Prints 'N passed, N failed'."""

import collections
import sys
import time
import traceback

import psycopg

CONNINFO = sys.argv[1]
RUNS = int(sys.argv[2])
MARKER = "SELECT gender_concept_id, count(*) AS reuse_marker FROM ndb.person GROUP BY gender_concept_id"
results = []


def check(fn):
    try:
        fn()
        results.append((fn.__name__, None))
    except Exception:  # noqa: BLE001 - report every failure
        results.append((fn.__name__, traceback.format_exc()))
    return fn


def connect():
    return psycopg.connect(CONNINFO, autocommit=True)


def rows_of(table):
    with connect() as conn:
        return conn.execute(f"SELECT gender_concept_id, year_of_birth FROM {table}").fetchall()


NDB = rows_of("ndb.person")
BY_GENDER = collections.Counter(g for g, _ in NDB)


@check
def the_same_statement_again_in_every_protocol():
    with connect() as conn:
        for _ in range(RUNS):
            got = dict(conn.execute(MARKER).fetchall())
            assert got == BY_GENDER, (got, BY_GENDER)
        for _ in range(RUNS):
            got = dict(conn.execute(MARKER, prepare=True).fetchall())
            assert got == BY_GENDER, (got, BY_GENDER)
        with psycopg.ClientCursor(conn) as cur:
            for _ in range(RUNS):
                cur.execute(MARKER)
                assert dict(cur.fetchall()) == BY_GENDER


@check
def each_parameter_value_gets_its_own_answer():
    sql = "SELECT count(*) FROM ndb.person WHERE year_of_birth < %s AND gender_concept_id = %s"
    with connect() as conn:
        for prepare in (False, True):
            for _ in range(2):
                for year in (1930, 1950, 1970, 1990):
                    for gender in BY_GENDER:
                        want = sum(1 for g, y in NDB if g == gender and y is not None and y < year)
                        got = conn.execute(sql, (year, gender), prepare=prepare).fetchone()[0]
                        assert got == want, (year, gender, got, want)


@check
def search_path_decides_which_table_a_name_means():
    linked = len(rows_of("linked.person"))
    assert linked != len(NDB), "the check needs two tables of different sizes"
    with connect() as conn:
        for schema, want in (("ndb", len(NDB)), ("linked", linked), ("ndb", len(NDB))):
            conn.execute(f"SET search_path TO {schema}")
            for prepare in (False, True):
                got = conn.execute("SELECT count(*) FROM person", prepare=prepare).fetchone()[0]
                assert got == want, (schema, got, want)


@check
def a_lower_role_never_gets_the_stewards_answer():
    exact = dict(BY_GENDER)
    assert any(v % 5 for v in exact.values()), "the check needs a count that is not a multiple of 5"
    with connect() as conn:
        for _ in range(3):
            assert dict(conn.execute(MARKER).fetchall()) == exact
        conn.execute("SET ROLE analyst")
        for prepare in (False, True):
            for _ in range(3):
                released = dict(conn.execute(MARKER, prepare=prepare).fetchall())
                assert set(released) <= set(exact), released
                # Released counts are rounded to 5 and within a few persons of the truth.
                for g, v in released.items():
                    assert v % 5 == 0 and abs(v - exact[g]) <= 10, (g, v, exact[g])
        conn.execute("SET ROLE NONE")
        assert dict(conn.execute(MARKER).fetchall()) == exact


@check
def cohorts_are_read_as_they_are_now():
    name = f"reuse_{int(time.time() * 1000) % 1000000}"
    sql = f"SELECT count(*) FROM cohort('{name}')"
    with connect() as conn:
        for gender in BY_GENDER:
            conn.execute(f"DROP COHORT IF EXISTS {name}")
            conn.execute(
                f"CREATE COHORT {name} AS SELECT person_id FROM ndb.person WHERE gender_concept_id = {gender}"
            )
            for prepare in (False, True):
                for _ in range(2):
                    got = conn.execute(sql, prepare=prepare).fetchone()[0]
                    assert got == BY_GENDER[gender], (gender, got)
        conn.execute(f"DROP COHORT {name}")


@check
def volatile_functions_are_evaluated_every_time():
    with connect() as conn:
        for prepare in (False, True):
            draws = {conn.execute("SELECT random()", prepare=prepare).fetchone()[0] for _ in range(5)}
            assert len(draws) == 5, draws
            first = conn.execute("SELECT now()", prepare=prepare).fetchone()[0]
            time.sleep(0.02)
            second = conn.execute("SELECT now()", prepare=prepare).fetchone()[0]
            assert second > first, (first, second)
            picks = {
                conn.execute(
                    "SELECT count(*) FROM ndb.person WHERE random() < 0.5", prepare=prepare
                ).fetchone()[0]
                for _ in range(5)
            }
            assert len(picks) > 1, picks


failed = [(n, e) for n, e in results if e]
for n, e in failed:
    print(f"FAILED {n}\n{e}")
print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
