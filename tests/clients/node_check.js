// node-postgres against `tsunagu serve`: connect as analyst and as steward,
// list schemas and tables, run a parameterized aggregate, check values and
// types. Prints a summary line; exits non-zero when anything fails.
//
// usage: node node_check.js HOST PORT
const path = require('path');
const { Client } = require(path.join(__dirname, 'node', 'node_modules', 'pg'));

const [host, port] = process.argv.slice(2);
let passed = 0;
let failed = 0;

async function session(user) {
  const client = new Client({ host, port: Number(port), user, password: 'tsunagu', database: 'tsunagu' });
  await client.connect();
  try {
    const schemas = await client.query('SELECT schema_name FROM information_schema.schemata ORDER BY 1');
    const names = schemas.rows.map((r) => r.schema_name);
    if (!names.includes('ndb') || !names.includes('vocab')) throw new Error(`schemas: ${names}`);
    const tables = await client.query(
      'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1', ['ndb']);
    if (!tables.rows.some((r) => r.table_name === 'person')) throw new Error('no ndb.person');
    const res = await client.query({
      name: 'by-gender',
      text: "SELECT gender_concept_id, count(DISTINCT person_id) AS persons, avg(year_of_birth) AS mean_year, DATE '2020-01-01' AS as_of FROM ndb.person WHERE year_of_birth >= $1 GROUP BY 1 ORDER BY 1",
      values: [1900],
    });
    if (res.rows.length !== 2) throw new Error(`rows: ${JSON.stringify(res.rows)}`);
    for (const r of res.rows) {
      // int8 comes back as a string in node-postgres; numbers must parse as integers.
      if (!/^\d+$/.test(String(r.persons)) || Number(r.persons) < 1000) throw new Error(`persons ${r.persons}`);
      // avg of integers is a numeric, which node-postgres gives as text (as from PostgreSQL).
      if (typeof r.mean_year !== 'string' || !(Number(r.mean_year) > 1940 && Number(r.mean_year) < 2000)) throw new Error(`mean_year ${r.mean_year}`);
      if (!(r.as_of instanceof Date) || r.as_of.getFullYear() !== 2020) throw new Error(`as_of ${r.as_of}`);
    }
    const who = await client.query('SELECT current_user AS u');
    if (who.rows[0].u !== user) throw new Error(`current_user ${who.rows[0].u}`);
  } finally {
    await client.end();
  }
}

(async () => {
  for (const user of ['analyst', 'steward']) {
    try {
      await session(user);
      passed += 1;
    } catch (e) {
      failed += 1;
      console.log(`FAILED node-postgres as ${user}: ${e.stack || e}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
