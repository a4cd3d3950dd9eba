"""Runs the adversarial cases of tests/privacy/adversarial.txt as one analyst
connection with psycopg 3 and checks each expectation. Prints one line per
failing case and a summary; exits non-zero when any case fails."""

import sys

import psycopg

CONNINFO, CASES = sys.argv[1], sys.argv[2]


def cases():
    with open(CASES, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            expect, sql = (part.strip() for part in line.split("|", 1))
            yield number, expect, sql


def check(conn, expect, sql):
    with conn.cursor() as cur:
        try:
            cur.execute(sql)
            rows = cur.fetchall() if cur.description else []
            names = [d.name for d in cur.description or []]
        except psycopg.Error as e:
            code = e.sqlstate
            message = str(e)
            if expect.startswith("refused"):
                want = expect.split()[1]
                if code != want:
                    return f"expected SQLSTATE {want}, got {code}: {message}"
                if "[rule:" not in message:
                    return f"refusal does not name its rule: {message}"
                return None
            return f"expected {expect}, got error {code}: {message}"
    if expect.startswith("refused"):
        return f"expected a refusal, got {len(rows)} row(s): {rows[:3]}"
    if expect == "null":
        if len(rows) != 1 or any(v is not None for v in rows[0]):
            return f"expected one all-NULL row, got {rows[:3]}"
    elif expect == "empty":
        if rows:
            return f"expected no rows, got {rows[:3]}"
    elif expect == "rounded":
        if not rows:
            return "expected released rows, got none"
        counted = [i for i, n in enumerate(names) if n.startswith("n")]
        if not counted:
            return "no n* column to check"
        for row in rows:
            for i in counted:
                v = row[i]
                if v is not None and (int(v) % 5 != 0 or int(v) < 10):
                    return f"column {names[i]} = {v} is not a rounded count of at least 10 persons"
    elif expect != "ok":
        return f"unknown expectation {expect!r}"
    return None


def main():
    passed = failed = 0
    with psycopg.connect(CONNINFO, autocommit=True) as conn:
        for number, expect, sql in cases():
            problem = check(conn, expect, sql)
            if problem is None:
                passed += 1
            else:
                failed += 1
                print(f"line {number}: {sql}\n    {problem}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
