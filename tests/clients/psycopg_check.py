"""Checks Tsunagu's wire endpoint with psycopg 3: text and binary results,
parameters, types, Describe, errors with SQLSTATE, concurrency, cancel,
streaming. Usage: psycopg_check.py CONNINFO. Prints 'N passed, N failed'."""

import datetime
import decimal
import re
import sys
import threading
import time
import traceback

import psycopg
from psycopg import errors

CONNINFO = sys.argv[1]
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


@check
def counts_and_parameters():
    with connect() as conn:
        total = conn.execute("SELECT count(*) FROM ndb.person").fetchone()[0]
        assert isinstance(total, int) and total > 0, total
        older = conn.execute("SELECT count(*) FROM ndb.person WHERE year_of_birth < %s", (1950,)).fetchone()[0]
        assert 0 < older < total, (older, total)
        by_param = conn.execute(
            "SELECT count(*) FROM ndb.person WHERE year_of_birth < %s AND gender_concept_id = %s", (1950, 8532)
        ).fetchone()[0]
        assert 0 < by_param < older, (by_param, older)
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT count(*) FROM ndb.person WHERE year_of_birth < %s", (1950,))
            assert cur.fetchone()[0] == older


@check
def startup_parameters():
    with connect() as conn:
        assert conn.info.server_version == 160006, conn.info.server_version
        assert "Tsunagu" in conn.info.parameter_status("server_version")
        assert conn.execute("SHOW server_version").fetchone()[0] == "16.6"
        assert conn.info.parameter_status("default_transaction_read_only") == "on"


TYPES_SQL = (
    "SELECT DATE '2020-01-02' AS d, CAST(1.5 AS DOUBLE) AS f, true AS b, 'x' AS t, CAST(3 AS BIGINT) AS i, "
    "CAST(1.25 AS DECIMAL(10,2)) AS n, TIMESTAMP '2020-01-02 03:04:05' AS ts, CAST(2 AS INT) AS i4, "
    "make_array(1, 2, 3) AS arr, CAST(NULL AS BIGINT) AS nothing, CAST('abc' AS BYTEA) AS raw, "
    "make_array('a', 'b') AS texts, make_array(DATE '2020-01-01') AS dates, CAST(2.5 AS REAL) AS f4, "
    "CAST(-3 AS SMALLINT) AS i2"
)
TYPES_EXPECTED = (
    datetime.date(2020, 1, 2), 1.5, True, "x", 3, decimal.Decimal("1.25"),
    datetime.datetime(2020, 1, 2, 3, 4, 5), 2, [1, 2, 3], None, b"abc",
    ["a", "b"], [datetime.date(2020, 1, 1)], 2.5, -3,
)


@check
def types_text():
    with connect() as conn:
        row = conn.execute(TYPES_SQL).fetchone()
        assert row == TYPES_EXPECTED, row


@check
def types_binary():
    with connect() as conn, conn.cursor(binary=True) as cur:
        cur.execute(TYPES_SQL)
        row = cur.fetchone()
        assert row == TYPES_EXPECTED, row


@check
def dates_from_the_store_are_dates():
    with connect() as conn:
        row = conn.execute(
            "SELECT min(drug_exposure_start_date), max(days_supply) FROM ndb.drug_exposure WHERE person_id < %s", (500,)
        ).fetchone()
        assert isinstance(row[0], datetime.date) and isinstance(row[1], int), row


@check
def describe_matches_execute():
    with connect() as conn:
        query = "SELECT person_id, person_key, year_of_birth FROM ndb.person WHERE year_of_birth = %s LIMIT 3"
        for _ in range(6):  # prepared server-side after the fifth execution
            cur = conn.execute(query, (1960,), prepare=True)
            names = [d.name for d in cur.description]
            oids = [d.type_code for d in cur.description]
            assert names == ["person_id", "person_key", "year_of_birth"], names
            assert oids == [20, 25, 20], oids
            assert all(r[2] == 1960 for r in cur.fetchall())


# A CASE mixing integer and float branches, and float columns: the types
# announced at Describe, the types and the text sent at Execute, as a real
# PostgreSQL 15 answers them (recorded from PostgreSQL 15.18).
MIXED_SQL = (
    b"SELECT CASE WHEN x > 1 THEN 1 ELSE 0.5::float8 END AS w, x::float8 / 4 AS f, "
    b"x * 1e20::float8 AS big FROM (VALUES (1), (2), (3)) AS t(x) ORDER BY x"
)
MIXED_POSTGRES_TYPES = [701, 701, 701]
MIXED_POSTGRES_TEXT = [
    [b"0.5", b"0.25", b"1e+20"],
    [b"1", b"0.5", b"2e+20"],
    [b"1", b"0.75", b"3e+20"],
]


@check
def described_types_are_the_types_sent():
    with connect() as conn:
        pg = conn.pgconn
        assert pg.prepare(b"mixed", MIXED_SQL).status == 1, pg.error_message
        described = pg.describe_prepared(b"mixed")
        assert [described.ftype(i) for i in range(described.nfields)] == MIXED_POSTGRES_TYPES
        run = pg.exec_prepared(b"mixed", [], result_format=0)
        assert [run.ftype(i) for i in range(run.nfields)] == MIXED_POSTGRES_TYPES
        rows = [[run.get_value(r, c) for c in range(run.nfields)] for r in range(run.ntuples)]
        assert rows == MIXED_POSTGRES_TEXT, rows
        # Through psycopg's own Describe, text and binary.
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(MIXED_SQL.decode())
                assert [d.type_code for d in cur.description] == MIXED_POSTGRES_TYPES
                assert cur.fetchall() == [(0.5, 0.25, 1e20), (1.0, 0.5, 2e20), (1.0, 0.75, 3e20)]


# Intervals and float arrays: the types and the text a real PostgreSQL 15
# sends (recorded from PostgreSQL 15.18).
INTERVAL_SQL = (
    b"SELECT INTERVAL '1 day 12 hours' AS a, INTERVAL '-1 day' + INTERVAL '2 hours' AS b, 3 * INTERVAL '1 day' AS c, "
    b"INTERVAL '1 year 2 months' AS d, TIMESTAMP '2020-01-02 10:00:00' - TIMESTAMP '2020-01-01 08:30:00' AS e, "
    b"ARRAY[1.0::float8, 2.5, 0.1, 1e20] AS f, ARRAY[x::float8 / 4, NULL] AS g FROM (VALUES (2)) t(x)"
)
INTERVAL_POSTGRES_TYPES = [1186, 1186, 1186, 1186, 1186, 1022, 1022]
INTERVAL_POSTGRES_TEXT = [
    b"1 day 12:00:00", b"-1 days +02:00:00", b"3 days", b"1 year 2 mons", b"1 day 01:30:00",
    b"{1,2.5,0.1,1e+20}", b"{0.5,NULL}",
]


@check
def intervals_and_float_arrays_as_postgresql_sends_them():
    with connect() as conn:
        pg = conn.pgconn
        assert pg.prepare(b"intervals", INTERVAL_SQL).status == 1, pg.error_message
        described = pg.describe_prepared(b"intervals")
        types = [described.ftype(i) for i in range(described.nfields)]
        assert types == INTERVAL_POSTGRES_TYPES, types
        run = pg.exec_prepared(b"intervals", [], result_format=0)
        types = [run.ftype(i) for i in range(run.nfields)]
        assert types == INTERVAL_POSTGRES_TYPES, types
        text = [run.get_value(0, c) for c in range(run.nfields)]
        assert text == INTERVAL_POSTGRES_TEXT, text
        day = datetime.timedelta(days=1)
        hour = datetime.timedelta(hours=1)
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(INTERVAL_SQL.decode())
                row = cur.fetchone()
                assert row[:3] == (day + 12 * hour, -day + 2 * hour, 3 * day), (binary, row)
                assert row[4] == day + hour * 1.5, (binary, row)
                assert row[5] == [1.0, 2.5, 0.1, 1e20] and row[6] == [0.5, None], (binary, row)


# Sums of bigint and averages of integers are numeric; a sum of integer
# constants is a bigint (PostgreSQL 15.18: numeric, numeric, bigint with
# `3`, `1.5000000000000000`, `1`).
SUMS_SQL = (
    "SELECT sum(x), avg(x), sum(CASE WHEN x > 1 THEN 1 ELSE 0 END) "
    "FROM (VALUES (1::bigint), (2::bigint)) t(x)"
)


@check
def sums_and_averages_typed_as_postgresql_types_them():
    with connect() as conn:
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(SUMS_SQL)
                assert [d.type_code for d in cur.description] == [1700, 1700, 20], cur.description
                row = cur.fetchone()
                assert row == (decimal.Decimal(3), decimal.Decimal("1.5"), 1), (binary, row)
                assert isinstance(row[1], decimal.Decimal), row


@check
def numeric_constants_are_exact():
    # PostgreSQL 15: 0.3, 1000, 33.3333333333333333, 1.5, all numeric (1700).
    with connect() as conn:
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute("SELECT 0.1 + 0.2, 1e3, 100.0 * 1 / 3, 0.5 * 3")
                assert [d.type_code for d in cur.description] == [1700] * 4, cur.description
                row = cur.fetchone()
                assert row == (decimal.Decimal("0.3"), decimal.Decimal(1000),
                               decimal.Decimal("33.3333333333333333"), decimal.Decimal("1.5")), (binary, row)
                # A double precision meeting a numeric is double precision
                # (701, and 1022 for its array), as PostgreSQL types it.
                cur.execute("SELECT CASE WHEN 1 < 2 THEN CAST(1e300 AS double precision) ELSE 0.5 END, "
                            "ARRAY[CAST(2.5 AS double precision), 0.1]")
                assert [d.type_code for d in cur.description] == [701, 1022], cur.description
                assert cur.fetchone() == (1e300, [2.5, 0.1])


@check
def two_columns_of_the_same_name():
    with connect() as conn:
        cur = conn.execute("SELECT count(*), count(*), 1 AS n, 2 AS n FROM ndb.person")
        names = [d.name for d in cur.description]
        assert names[0] == names[1] and names[2:] == ["n", "n"], names
        total, again, one, two = cur.fetchone()
        assert total == again and total > 0 and (one, two) == (1, 2)


@check
def names_after_a_star_and_of_a_union_as_postgresql_gives_them():
    # PostgreSQL 15.18 names these columns `count`, and `a | ?column? | max`.
    with connect() as conn:
        cur = conn.execute(
            "SELECT count(*) FROM ndb.person UNION ALL SELECT count(*) FROM ndb.person"
        )
        assert [d.name for d in cur.description] == ["count"], cur.description
        cur = conn.execute("SELECT *, 1, max(a) OVER () FROM (SELECT 2 AS a) s")
        assert [d.name for d in cur.description] == ["a", "?column?", "max"], cur.description
        assert cur.fetchone() == (2, 1, 2)


@check
def errors_carry_sqlstate():
    with connect() as conn:
        try:
            conn.execute("SELECT * FROM ndb.nope")
            raise AssertionError("no error")
        except errors.UndefinedTable as e:
            assert e.sqlstate == "42P01"
        try:
            conn.execute("SELEC 1")
            raise AssertionError("no error")
        except errors.SyntaxError as e:
            assert e.sqlstate == "42601"
        assert conn.execute("SELECT 1").fetchone()[0] == 1
        # Typed as PostgreSQL types them (15.18 raises the same classes).
        for sql, error in [
            ("SELECT no_such_function(person_id) FROM ndb.person", errors.UndefinedFunction),
            ("SELECT no_such_column FROM ndb.person", errors.UndefinedColumn),
            ("SELECT person_id FROM ndb.person a, ndb.person b", errors.AmbiguousColumn),
            ("SELECT 1 FROM generate_series(1, 2) g, nowhere.nope", errors.UndefinedTable),
        ]:
            try:
                conn.execute(sql)
                raise AssertionError(f"no error: {sql}")
            except error:
                pass
        try:
            conn.execute("SELECT CAST(person_key AS BIGINT) FROM ndb.person")
            raise AssertionError("no error")
        except psycopg.Error as e:
            message = str(e)
            assert not re.search(r"[0-9a-f]{16}", message), message


@check
def many_concurrent_connections():
    answers, failures = [], []

    def work():
        try:
            with connect() as conn:
                answers.append(conn.execute("SELECT count(DISTINCT person_id) FROM linked.person").fetchone()[0])
        except Exception as e:  # noqa: BLE001
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    assert len(answers) == 12 and len(set(answers)) == 1, answers


@check
def cancel_stops_a_running_query():
    with connect() as conn:
        box = {}

        def run():
            try:
                conn.execute(
                    "SELECT count(*) FROM ndb.drug_exposure a CROSS JOIN ndb.drug_exposure b "
                    "WHERE a.drug_exposure_id + b.drug_exposure_id = 7"
                )
                box["result"] = "finished"
            except Exception as e:  # noqa: BLE001
                box["result"] = e

        t = threading.Thread(target=run)
        t.start()
        time.sleep(1.5)
        started = time.time()
        conn.cancel_safe()
        t.join(30)
        assert not t.is_alive(), "the query was not cancelled"
        assert isinstance(box["result"], errors.QueryCanceled), box
        assert time.time() - started < 10
        assert conn.execute("SELECT 2").fetchone()[0] == 2


@check
def results_stream():
    with connect() as conn:
        total = conn.execute("SELECT count(*) FROM ndb.drug_exposure").fetchone()[0]
        seen = 0
        with conn.cursor() as cur:
            for _ in cur.stream("SELECT drug_exposure_id, drug_exposure_start_date FROM ndb.drug_exposure"):
                seen += 1
        assert seen == total, (seen, total)


failed = [(n, tb) for n, tb in results if tb]
for name, tb in results:
    print(("ok   " if not tb else "FAIL ") + name)
    if tb:
        print(tb)
print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
