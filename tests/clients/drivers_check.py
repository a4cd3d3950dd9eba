"""Python drivers against `tsunagu serve`: asyncpg (binary protocol, server-side
prepared statements) and SQLAlchemy with pandas.read_sql, each as an analyst
and as a steward: connect, list schemas and tables, run a parameterized
aggregate and check values and types. Prints one line per failure and a
summary line; exits non-zero when anything fails.

usage: drivers_check.py HOST PORT"""

import asyncio
import datetime
import decimal
import sys
import traceback

HOST, PORT = sys.argv[1], int(sys.argv[2])
LOGINS = [("analyst", "tsunagu"), ("steward", "tsunagu")]
AGGREGATE = (
    "SELECT gender_concept_id, count(DISTINCT person_id) AS persons, "
    "avg(year_of_birth) AS mean_year, DATE '2020-01-01' AS as_of "
    "FROM ndb.person WHERE year_of_birth >= $1 GROUP BY gender_concept_id ORDER BY gender_concept_id"
)

passed = 0
failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
    except Exception:  # noqa: BLE001 - every failure is reported
        failed += 1
        print(f"FAILED {name}\n{traceback.format_exc()}")


def check_rows(rows, mean_type=decimal.Decimal):
    assert len(rows) == 2, rows
    for gender, persons, mean_year, as_of in rows:
        assert gender in (8507, 8532), gender
        assert isinstance(persons, int) and persons > 1000, persons
        # avg of integers is a numeric, as in PostgreSQL.
        assert isinstance(mean_year, mean_type) and 1940 < mean_year < 2000, mean_year
        assert as_of == datetime.date(2020, 1, 1), as_of


async def asyncpg_session(user, password):
    import asyncpg

    conn = await asyncpg.connect(host=HOST, port=PORT, user=user, password=password, database="tsunagu", ssl=False)
    try:
        schemas = [r[0] for r in await conn.fetch("SELECT schema_name FROM information_schema.schemata ORDER BY 1")]
        assert "ndb" in schemas and "vocab" in schemas, schemas
        tables = [r[0] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", "ndb")]
        assert "person" in tables and "drug_exposure" in tables, tables
        # Prepared once, run several times (server-side prepared statement, binary results).
        stmt = await conn.prepare(AGGREGATE)
        for _ in range(6):
            check_rows([tuple(r) for r in await stmt.fetch(1900)])
        assert await conn.fetchval("SELECT current_user") == user
        n = await conn.fetchval("SELECT count(*) FROM vocab.concept WHERE vocabulary_id = $1", "ICD10")
        assert isinstance(n, int) and n > 10, n
    finally:
        await conn.close()


def sqlalchemy_session(user, password):
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg://{user}:{password}@{HOST}:{PORT}/tsunagu?sslmode=disable")
    try:
        inspector = sa.inspect(engine)
        schemas = inspector.get_schema_names()
        assert "ndb" in schemas and "linked" in schemas, schemas
        tables = inspector.get_table_names(schema="ndb")
        assert "person" in tables, tables
        columns = {c["name"]: c for c in inspector.get_columns("person", schema="ndb")}
        assert "person_id" in columns and "year_of_birth" in columns, list(columns)
        frame = pd.read_sql(
            sa.text(AGGREGATE.replace("$1", ":year")), engine, params={"year": 1900}
        )
        assert list(frame.columns) == ["gender_concept_id", "persons", "mean_year", "as_of"], frame.columns
        # pandas reads numerics as floats (coerce_float), as from PostgreSQL.
        check_rows(list(frame.itertuples(index=False, name=None)), mean_type=float)
        assert str(frame["persons"].dtype).startswith("int"), frame.dtypes
    finally:
        engine.dispose()


def psycopg_prepared(user, password):
    """psycopg 3 switches to a named server-side prepared statement after the
    fifth execution of a query, as pgjdbc does: results must stay the same."""
    import psycopg

    conninfo = f"host={HOST} port={PORT} dbname=tsunagu user={user} password={password} sslmode=disable"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        assert conn.prepare_threshold == 5
        counts = []
        for year in [1900, 1950, 1900, 1950, 1900, 1950, 1900, 1950]:
            with conn.cursor(binary=year == 1950) as cur:
                cur.execute(AGGREGATE.replace("$1", "%s"), (year,))
                rows = cur.fetchall()
                assert all(isinstance(r[3], datetime.date) for r in rows), rows
                counts.append(sum(r[1] for r in rows))
        assert counts[0::2] == [counts[0]] * 4 and counts[1::2] == [counts[1]] * 4, counts
        assert counts[0] > counts[1], counts


for user, password in LOGINS:
    check(f"psycopg prepared statements as {user}", lambda: psycopg_prepared(user, password))
    check(f"asyncpg as {user}", lambda: asyncio.run(asyncpg_session(user, password)))
    check(f"sqlalchemy+pandas as {user}", lambda: sqlalchemy_session(user, password))

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
