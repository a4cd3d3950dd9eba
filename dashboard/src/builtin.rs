//! The dashboards every store gets: an overview (persons per source and
//! year, age and sex, prefectures, linkage), saved cohorts, data quality,
//! and a study template. Their SQL is written for the store at hand from
//! the tables it shows, so they run on any store.

use tsunagu_engine::catalog::{LINKED_SCHEMA, Store};

use crate::spec::{Chart, Dashboard, Panel, Param};

/// The built-in dashboards of a store.
pub fn dashboards(store: &Store) -> Vec<Dashboard> {
    let tables = Tables(store);
    let mut out = vec![overview(&tables)];
    if let Some(d) = study_template(&tables) {
        out.push(d);
    }
    out.push(cohorts());
    out.push(quality());
    if tables.has("vocab", "concept", &["concept_id", "concept_code"])
        && tables.has(
            "vocab",
            "concept_relationship",
            &["concept_id_1", "concept_id_2"],
        )
    {
        out.push(knowledge_graph());
    }
    out
}

struct Tables<'a>(&'a Store);

impl Tables<'_> {
    /// The source schemas, in manifest order.
    fn sources(&self) -> Vec<String> {
        self.0
            .manifest()
            .sources
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    fn has(&self, schema: &str, table: &str, columns: &[&str]) -> bool {
        self.0.shown_tables().iter().any(|t| {
            t.schema == schema
                && t.name == table
                && columns.iter().all(|c| {
                    t.plan
                        .schema()
                        .fields()
                        .iter()
                        .any(|f| f.name().as_str() == *c)
                })
        })
    }

    /// `linked` when the linked schema has the table with those columns,
    /// else the first source that has it.
    fn best(&self, table: &str, columns: &[&str]) -> Option<String> {
        if self.has(LINKED_SCHEMA, table, columns) {
            return Some(LINKED_SCHEMA.to_owned());
        }
        self.sources()
            .into_iter()
            .find(|s| self.has(s, table, columns))
    }
}

fn panel(title: &str, title_ja: &str, chart: Chart, sql: String) -> Panel {
    Panel {
        title: title.into(),
        title_ja: Some(title_ja.into()),
        chart,
        x: None,
        y: None,
        series: None,
        note: None,
        note_ja: None,
        sql,
    }
}

fn axes(mut p: Panel, x: Option<&str>, y: &str, series: Option<&str>) -> Panel {
    p.x = x.map(str::to_owned);
    p.y = Some(y.to_owned());
    p.series = series.map(str::to_owned);
    p
}

fn union(parts: Vec<String>) -> Option<String> {
    (!parts.is_empty()).then(|| parts.join("\nUNION ALL\n"))
}

fn overview(t: &Tables) -> Dashboard {
    let sources = t.sources();
    let mut panels = Vec::new();
    let person_sources: Vec<&String> = sources
        .iter()
        .filter(|s| t.has(s, "person", &["person_id"]))
        .collect();
    if !person_sources.is_empty() {
        let all = person_sources
            .iter()
            .map(|s| format!("SELECT person_id FROM {s}.person"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        panels.push(axes(
            panel(
                "Persons",
                "人数",
                Chart::Number,
                format!("SELECT count(DISTINCT person_id) AS persons FROM ({all}) AS p"),
            ),
            None,
            "persons",
            None,
        ));
        let per_source = person_sources
            .iter()
            .map(|s| {
                format!(
                    "SELECT '{s}' AS source, count(DISTINCT person_id) AS persons FROM {s}.person"
                )
            })
            .collect();
        if let Some(sql) = union(per_source) {
            panels.push(axes(
                panel(
                    "Persons per source",
                    "データソース別の人数",
                    Chart::Bar,
                    format!("{sql}\nORDER BY source"),
                ),
                Some("source"),
                "persons",
                None,
            ));
        }
    }
    let per_year: Vec<String> = sources
        .iter()
        .filter(|s| {
            t.has(
                s,
                "observation_period",
                &[
                    "person_id",
                    "observation_period_start_date",
                    "observation_period_end_date",
                ],
            )
        })
        .map(|s| {
            format!(
                "SELECT '{s}' AS source, year, count(DISTINCT person_id) AS persons FROM (\
                 SELECT person_id, unnest(range(\
                 CAST(date_part('year', observation_period_start_date) AS BIGINT), \
                 CAST(date_part('year', observation_period_end_date) AS BIGINT) + 1)) AS year \
                 FROM {s}.observation_period) AS y GROUP BY year"
            )
        })
        .collect();
    if let Some(sql) = union(per_year) {
        let mut p = axes(
            panel(
                "Persons observed per calendar year",
                "暦年別の観察人数",
                Chart::Line,
                format!("{sql}\nORDER BY year, source"),
            ),
            Some("year"),
            "persons",
            Some("source"),
        );
        p.note = Some("Persons with an observation period overlapping the year.".into());
        p.note_ja = Some("その年に観察期間がある人数。".into());
        panels.push(p);
    }
    let person_cols = ["person_id", "year_of_birth", "gender_concept_id"];
    let period_cols = ["person_id", "observation_period_start_date"];
    let pyramid_schema = if t.has(LINKED_SCHEMA, "person", &person_cols)
        && t.has(LINKED_SCHEMA, "observation_period", &period_cols)
    {
        Some(LINKED_SCHEMA.to_owned())
    } else {
        sources
            .iter()
            .find(|s| {
                t.has(s, "person", &person_cols) && t.has(s, "observation_period", &period_cols)
            })
            .cloned()
    };
    if let Some(s) = pyramid_schema {
        let mut p = axes(
            panel(
                "Persons by age at first observation and sex",
                "初回観察時の年齢・性別の人数",
                Chart::Pyramid,
                format!(
                    "SELECT CAST(floor((date_part('year', o.first_start) - p.year_of_birth) / 10) * 10 AS BIGINT) AS age_band, \
                     CASE p.gender_concept_id WHEN 8507 THEN 'male' ELSE 'female' END AS sex, \
                     count(DISTINCT p.person_id) AS persons \
                     FROM (SELECT person_id, min(observation_period_start_date) AS first_start \
                     FROM {s}.observation_period GROUP BY person_id) AS o \
                     JOIN (SELECT person_id, min(year_of_birth) AS year_of_birth, min(gender_concept_id) AS gender_concept_id \
                     FROM {s}.person GROUP BY person_id) AS p ON o.person_id = p.person_id \
                     WHERE p.gender_concept_id IN (8507, 8532) \
                     GROUP BY 1, 2 ORDER BY 1, 2 DESC"
                ),
            ),
            Some("age_band"),
            "persons",
            Some("sex"),
        );
        p.note = Some("Ten-year bands; 8507 male, 8532 female (OMOP gender concepts).".into());
        p.note_ja = Some("10歳階級。OMOPの性別コンセプト 8507 男性、8532 女性。".into());
        panels.push(p);
    }
    let located: Vec<String> = sources
        .iter()
        .filter(|s| t.has(s, "person", &["person_id", "location_id"]))
        .map(|s| format!("SELECT person_id, location_id FROM {s}.person"))
        .collect();
    if !located.is_empty() {
        let mut p = axes(
            panel(
                "Persons by prefecture",
                "都道府県別の人数",
                Chart::Map,
                format!(
                    "SELECT CAST(location_id AS BIGINT) AS prefecture, count(DISTINCT person_id) AS persons \
                     FROM ({}) AS p WHERE location_id BETWEEN 1 AND 47 GROUP BY 1 ORDER BY 1",
                    located.join(" UNION ALL ")
                ),
            ),
            Some("prefecture"),
            "persons",
            None,
        );
        p.note = Some(
            "person.location_id as JIS X 0401 prefecture codes, where a source delivers it.".into(),
        );
        p.note_ja =
            Some("person.location_id（JIS X 0401 都道府県コード）を届けるソースのみ。".into());
        panels.push(p);
    }
    if t.has(LINKED_SCHEMA, "person", &["person_id", "source"]) {
        let mut p = axes(
            panel(
                "Persons by number of linked sources",
                "連結されたソース数別の人数",
                Chart::Bar,
                format!(
                    "SELECT sources, count(*) AS persons FROM (SELECT person_id, count(DISTINCT source) AS sources \
                     FROM {LINKED_SCHEMA}.person GROUP BY person_id) AS l GROUP BY sources ORDER BY sources"
                ),
            ),
            Some("sources"),
            "persons",
            None,
        );
        p.note = Some("How many sources each linked person appears in.".into());
        p.note_ja = Some("連結後の各人が現れるソースの数。".into());
        panels.push(p);
    }
    if panels.is_empty() {
        panels.push(panel(
            "Tables",
            "テーブル",
            Chart::Table,
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY 1, 2"
                .into(),
        ));
    }
    Dashboard {
        id: "overview".into(),
        title: "Overview".into(),
        title_ja: Some("概要".into()),
        description: Some(
            "Who is in the store: persons per source and year, age and sex, prefectures, linkage."
                .into(),
        ),
        description_ja: Some("ストアの人数：ソース・年別、年齢・性別、都道府県、連結。".into()),
        params: vec![],
        panels,
    }
}

/// Monthly new users of a drug and the outcome in the 30 days after their
/// first dispensing.
fn study_template(t: &Tables) -> Option<Dashboard> {
    let drugs = t.best(
        "drug_exposure",
        &["person_id", "drug_concept_id", "drug_exposure_start_date"],
    )?;
    let conditions = t.best(
        "condition_occurrence",
        &["person_id", "condition_concept_id", "condition_start_date"],
    )?;
    let sql = format!(
        "WITH first_use AS (\
         SELECT person_id, min(drug_exposure_start_date) AS index_date FROM {drugs}.drug_exposure \
         WHERE in_concept_set(drug_concept_id, 'ATC', {{{{drug}}}}) GROUP BY person_id), \
         outcome AS (\
         SELECT DISTINCT f.person_id, f.index_date FROM first_use AS f \
         JOIN {conditions}.condition_occurrence AS c ON c.person_id = f.person_id \
         WHERE in_concept_set(c.condition_concept_id, 'ICD10', {{{{outcome}}}}) \
         AND c.condition_start_date >= f.index_date \
         AND c.condition_start_date <= f.index_date + INTERVAL '30 days') \
         SELECT CAST(date_trunc('quarter', index_date) AS DATE) AS quarter, 'new users' AS measure, count(*) AS persons \
         FROM first_use GROUP BY 1 \
         UNION ALL \
         SELECT CAST(date_trunc('quarter', index_date) AS DATE) AS quarter, 'outcome within 30 days' AS measure, count(*) AS persons \
         FROM outcome GROUP BY 1 \
         ORDER BY quarter, measure"
    );
    let mut p = axes(
        panel(
            "New users per quarter, and those with the outcome within 30 days",
            "四半期別の新規使用者数と30日以内のアウトカム",
            Chart::Line,
            sql,
        ),
        Some("quarter"),
        "persons",
        Some("measure"),
    );
    p.note = Some("First dispensing of the drug (ATC, with descendants) per person; the outcome (ICD-10, with descendants) on the day or in the 30 days after. Quarters with fewer than k persons are withheld.".into());
    p.note_ja = Some("各人の初回処方（ATC、下位コードを含む）と、当日から30日以内のアウトカム（ICD-10、下位コードを含む）。k人未満の四半期は表示しません。".into());
    Some(Dashboard {
        id: "new-users".into(),
        title: "Study: new users and an outcome".into(),
        title_ja: Some("研究テンプレート：新規使用者とアウトカム".into()),
        description: Some("Change the drug and the outcome codes to look at another pair.".into()),
        description_ja: Some("薬剤とアウトカムのコードを変えて別の組み合わせを見られます。".into()),
        params: vec![
            Param {
                name: "drug".into(),
                label: "Drug (ATC code)".into(),
                label_ja: Some("薬剤（ATCコード）".into()),
                default: "M01A".into(),
            },
            Param {
                name: "outcome".into(),
                label: "Outcome (ICD-10 code)".into(),
                label_ja: Some("アウトカム（ICD-10コード）".into()),
                default: "K92.2".into(),
            },
        ],
        panels: vec![p],
    })
}

/// A concept, its neighbours in the vocabulary and what follows it in the data.
fn knowledge_graph() -> Dashboard {
    let concept = "(SELECT concept_id FROM vocab.concept WHERE concept_code = {{code}} \
                   ORDER BY CASE WHEN standard_concept = 'S' THEN 0 ELSE 1 END, concept_id LIMIT 1)";
    // Names with their codes: a receipt code and its product share a name.
    let label_a = "a.concept_name || ' [' || a.concept_code || ']'";
    let label_b = "b.concept_name || ' [' || b.concept_code || ']'";
    let mut network = axes(
        panel(
            "The concept, its vocabulary neighbours and what follows it within a year",
            "概念、語彙上の隣接概念と1年以内に続く概念",
            Chart::Graph,
            format!(
                "SELECT {label_a} AS concept, {label_b} AS neighbour, CAST(NULL AS BIGINT) AS persons \
                 FROM graph.edges e JOIN graph.nodes a ON a.concept_id = e.concept_id_1 \
                 JOIN graph.nodes b ON b.concept_id = e.concept_id_2 \
                 WHERE e.concept_id_1 = {concept} AND e.provenance <> 'data' \
                 UNION ALL \
                 SELECT {label_a}, {label_b}, e.persons \
                 FROM graph.edges e JOIN graph.nodes a ON a.concept_id = e.concept_id_1 \
                 JOIN graph.nodes b ON b.concept_id = e.concept_id_2 \
                 WHERE e.concept_id_1 = {concept} AND e.relationship_id = 'followed by' AND e.window_days = 365"
            ),
        ),
        Some("concept"),
        "persons",
        Some("neighbour"),
    );
    network.note = Some("Grey: relationships of the vocabulary (hierarchy, code mappings). Weighted: concepts whose first occurrence follows the concept's within 365 days in some persons (the number of persons with both within a year, either order, released).".into());
    network.note_ja = Some("灰色：語彙の関係（階層・コード対応）。太さ：1年以内に初回出現が続く概念（前後いずれかの順で両方をもつ人数、公開規則を適用）。".into());
    let strongest = panel(
        "Strongest associations in the data",
        "データ上の強い関連",
        Chart::Table,
        format!(
            "SELECT e.relationship_id, e.window_days, b.concept_name AS concept, b.vocabulary_id, b.concept_code, \
             e.statistic, e.value, e.lower_95, e.persons \
             FROM graph.edges e JOIN graph.nodes b ON b.concept_id = e.concept_id_2 \
             WHERE e.concept_id_1 = {concept} AND e.provenance = 'data' \
             ORDER BY e.lower_95 DESC NULLS LAST, b.concept_code LIMIT 25"
        ),
    );
    let curated = panel(
        "Relationships in the vocabulary",
        "語彙上の関係",
        Chart::Table,
        format!(
            "SELECT e.relationship_id, b.vocabulary_id, b.concept_code, b.concept_name, b.concept_name_ja \
             FROM graph.edges e JOIN graph.nodes b ON b.concept_id = e.concept_id_2 \
             WHERE e.concept_id_1 = {concept} AND e.provenance <> 'data' \
             ORDER BY e.relationship_id, b.vocabulary_id, b.concept_code"
        ),
    );
    Dashboard {
        id: "knowledge-graph".into(),
        title: "Knowledge graph".into(),
        title_ja: Some("ナレッジグラフ".into()),
        description: Some("A concept by its code (ICD-10, ATC, a disease-name or receipt code, ...): its relationships in the vocabulary and the associations the data shows, computed per delivery.".into()),
        description_ja: Some("コード（ICD-10、ATC、傷病名コード、レセプトコードなど）で概念を選び、語彙上の関係とデータ上の関連（配信ごとに計算）を表示します。".into()),
        params: vec![Param {
            name: "code".into(),
            label: "Concept code".into(),
            label_ja: Some("概念コード".into()),
            default: "S72.0".into(),
        }],
        panels: vec![network, strongest, curated],
    }
}

fn cohorts() -> Dashboard {
    Dashboard {
        id: "cohorts".into(),
        title: "Saved cohorts".into(),
        title_ja: Some("保存したコホート".into()),
        description: Some(
            "The cohorts you can use (analysts: their own), with their sizes as released.".into(),
        ),
        description_ja: Some("利用できるコホートとその人数（公開規則を適用）。".into()),
        params: vec![],
        panels: vec![
            axes(
                panel(
                    "Persons per cohort",
                    "コホート別の人数",
                    Chart::Bar,
                    "SELECT name, size FROM cohorts ORDER BY name".into(),
                ),
                Some("name"),
                "size",
                None,
            ),
            panel(
                "Cohorts",
                "コホート一覧",
                Chart::Table,
                "SELECT name, owner, created_at, size FROM cohorts ORDER BY created_at DESC".into(),
            ),
        ],
    }
}

fn quality() -> Dashboard {
    Dashboard {
        id: "quality".into(),
        title: "Data quality".into(),
        title_ja: Some("データ品質".into()),
        description: Some("The store's data quality checks (run once, on first view).".into()),
        description_ja: Some("ストアのデータ品質チェック（初回表示時に実行）。".into()),
        params: vec![],
        panels: vec![
            axes(
                panel(
                    "Checks by status",
                    "状態別のチェック数",
                    Chart::Bar,
                    "SELECT status, count(*) AS checks FROM quality.results GROUP BY status ORDER BY status".into(),
                ),
                Some("status"),
                "checks",
                None,
            ),
            panel(
                "Failing checks",
                "不合格のチェック",
                Chart::Table,
                "SELECT check_id, table_name, field_name, severity, pct_violating \
                 FROM quality.results WHERE status = 'Failed' ORDER BY pct_violating DESC NULLS LAST, check_id LIMIT 50"
                    .into(),
            ),
        ],
    }
}
