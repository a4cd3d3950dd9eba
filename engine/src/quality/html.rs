//! `label.html`: the label as one static, self-contained page (no scripts,
//! no fonts or styles from elsewhere; plots are inline SVG), drawn from
//! `label.json` so that it shows exactly the released numbers.

use std::fmt::Write;

use serde_json::Value;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "<span class=w title=\"withheld: fewer than k\">&lt;k</span>".into(),
        Value::Number(n) => {
            if let Some(i) = n.as_u64() {
                let s = i.to_string();
                let mut out = String::new();
                for (i, c) in s.chars().enumerate() {
                    if i > 0 && (s.len() - i) % 3 == 0 {
                        out.push(',');
                    }
                    out.push(c);
                }
                out
            } else {
                n.to_string()
            }
        }
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

const COLORS: &[&str] = &[
    "#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#718096",
];

/// A bar chart of (label, value) pairs; withheld values are drawn as gaps.
fn bars(title: &str, points: &[(String, Option<f64>)], color: &str) -> String {
    let (w, h, left, bottom) = (560.0, 200.0, 56.0, 28.0);
    let max = points
        .iter()
        .filter_map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let n = points.len().max(1) as f64;
    let bw = (w - left - 8.0) / n;
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {w} {h}\" role=img aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    let plot_h = h - bottom - 10.0;
    let _ = write!(
        s,
        "<line x1={left} y1={} x2={} y2={} stroke=#999 />",
        h - bottom,
        w - 4.0,
        h - bottom
    );
    let _ = write!(
        s,
        "<text x={} y=14 class=ax text-anchor=end>{}</text>",
        left - 4.0,
        fmt_axis(max)
    );
    let step = (points.len() / 12).max(1);
    for (i, (label, v)) in points.iter().enumerate() {
        let x = left + i as f64 * bw;
        if let Some(v) = v {
            let bh = plot_h * v / max;
            let _ = write!(
                s,
                "<rect x={:.1} y={:.1} width={:.1} height={:.1} fill={color}><title>{}: {}</title></rect>",
                x + 1.0,
                h - bottom - bh,
                (bw - 2.0).max(1.0),
                bh,
                esc(label),
                fmt_axis(*v)
            );
        }
        if i % step == 0 {
            let _ = write!(
                s,
                "<text x={:.1} y={} class=ax text-anchor=middle>{}</text>",
                x + bw / 2.0,
                h - 10.0,
                esc(label)
            );
        }
    }
    s.push_str("</svg></figure>");
    s
}

fn fmt_axis(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A named series of (year, value), a value withheld as `None`.
type Series = (String, Vec<(i64, Option<f64>)>);

/// Lines of records by year, one per source.
fn lines(title: &str, series: &[Series]) -> String {
    let (w, h, left, bottom) = (560.0, 200.0, 56.0, 28.0);
    let years: Vec<i64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(y, _)| *y))
        .collect();
    let (Some(lo), Some(hi)) = (years.iter().min(), years.iter().max()) else {
        return String::new();
    };
    let max = series
        .iter()
        .flat_map(|(_, p)| p.iter().filter_map(|(_, v)| *v))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let span = ((hi - lo).max(1)) as f64;
    let x = |y: i64| left + (w - left - 12.0) * (y - lo) as f64 / span;
    let y = |v: f64| h - bottom - (h - bottom - 10.0) * v / max;
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {w} {h}\" role=img aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    let _ = write!(
        s,
        "<line x1={left} y1={} x2={} y2={} stroke=#999 /><text x={} y=14 class=ax text-anchor=end>{}</text>",
        h - bottom,
        w - 4.0,
        h - bottom,
        left - 4.0,
        fmt_axis(max)
    );
    let step = (((hi - lo) / 10).max(1)) as usize;
    for yr in (*lo..=*hi).step_by(step) {
        let _ = write!(
            s,
            "<text x={:.1} y={} class=ax text-anchor=middle>{yr}</text>",
            x(yr),
            h - 10.0
        );
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = points
            .iter()
            .filter_map(|(yr, v)| v.map(|v| format!("{:.1},{:.1}", x(*yr), y(v))))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=none stroke={color} stroke-width=2 points=\"{}\"><title>{}</title></polyline>\
             <text x={} y={} class=lg fill={color}>{}</text>",
            pts.join(" "),
            esc(name),
            left + 8.0 + 90.0 * i as f64,
            24,
            esc(name)
        );
    }
    s.push_str("</svg></figure>");
    s
}

/// Each prefecture's share of the persons (bar) against its share of
/// Japan's population (tick), north to south.
fn prefectures(rows: &[Value]) -> String {
    let shown: Vec<&Value> = rows.iter().filter(|r| r["share_pct"].is_number()).collect();
    if shown.is_empty() {
        return String::new();
    }
    let max = rows
        .iter()
        .flat_map(|r| [r["share_pct"].as_f64(), r["reference_share_pct"].as_f64()])
        .flatten()
        .fold(1.0_f64, f64::max);
    let (w, h, left, base) = (560.0, 200.0, 30.0, 170.0);
    let step = (w - left - 4.0) / rows.len().max(1) as f64;
    let mut s = format!(
        "<figure><figcaption>Persons by prefecture: share of persons (bars) against share of Japan's population (ticks)</figcaption><svg viewBox=\"0 0 {w} {h}\" role=img aria-label=\"prefectures\"><line x1={left} y1={base} x2={w} y2={base} stroke=#999 />"
    );
    for (i, r) in rows.iter().enumerate() {
        let x = left + step * i as f64;
        let name = r["prefecture"].as_str().unwrap_or("");
        let reference = r["reference_share_pct"].as_f64().unwrap_or(0.0);
        if let Some(share) = r["share_pct"].as_f64() {
            let bh = 150.0 * share / max;
            let _ = write!(
                s,
                "<rect x={x:.1} y={:.1} width={:.1} height={bh:.1} fill=#2b6cb0><title>{}: {share:.2}% of persons, {reference:.2}% of Japan</title></rect>",
                base - bh,
                (step - 1.5).max(1.0),
                esc(name)
            );
        }
        let ty = base - 150.0 * reference / max;
        let _ = write!(
            s,
            "<line x1={x:.1} y1={ty:.1} x2={:.1} y2={ty:.1} stroke=#c05621 stroke-width=2><title>{}: {reference:.2}% of Japan</title></line>",
            x + step - 1.5,
            esc(name)
        );
        if i % 6 == 0 {
            let _ = write!(
                s,
                "<text x={:.1} y=188 class=ax text-anchor=middle>{}</text>",
                x + step / 2.0,
                esc(name)
            );
        }
    }
    s.push_str("</svg></figure>");
    s
}

/// Persons by age decile: men to the left, women to the right.
fn pyramid(rows: &[Value]) -> String {
    let mut deciles: Vec<i64> = rows
        .iter()
        .filter_map(|r| r["age_decile"].as_i64())
        .collect();
    deciles.sort_unstable();
    deciles.dedup();
    if deciles.is_empty() {
        return String::new();
    }
    let get = |d: i64, g: &str| {
        rows.iter()
            .find(|r| r["age_decile"].as_i64() == Some(d) && r["gender"] == g)
            .and_then(|r| r["persons"].as_f64())
    };
    let max = rows
        .iter()
        .filter_map(|r| r["persons"].as_f64())
        .fold(1.0_f64, f64::max);
    let bar_h = 16.0;
    let (w, mid) = (560.0, 280.0);
    let h = 30.0 + bar_h * deciles.len() as f64;
    let half = 220.0;
    let mut s = format!(
        "<figure><figcaption>Persons by age at first observation (male left, female right)</figcaption><svg viewBox=\"0 0 {w} {h}\" role=img aria-label=\"age and sex\">"
    );
    for (i, d) in deciles.iter().rev().enumerate() {
        let yy = 10.0 + bar_h * i as f64;
        if let Some(m) = get(*d, "male") {
            let bw = half * m / max;
            let _ = write!(
                s,
                "<rect x={:.1} y={yy} width={bw:.1} height={} fill=#2b6cb0><title>male {}-{}: {m}</title></rect>",
                mid - 22.0 - bw,
                bar_h - 2.0,
                d * 10,
                d * 10 + 9
            );
        }
        if let Some(f) = get(*d, "female") {
            let bw = half * f / max;
            let _ = write!(
                s,
                "<rect x={:.1} y={yy} width={bw:.1} height={} fill=#c05621><title>female {}-{}: {f}</title></rect>",
                mid + 22.0,
                bar_h - 2.0,
                d * 10,
                d * 10 + 9
            );
        }
        let _ = write!(
            s,
            "<text x={mid} y={} class=ax text-anchor=middle>{}-{}</text>",
            yy + bar_h - 5.0,
            d * 10,
            d * 10 + 9
        );
    }
    s.push_str("</svg></figure>");
    s
}

/// Renders the label as a page.
pub fn render(label: &Value) -> String {
    let mut s = String::new();
    let store = label["store"].as_str().unwrap_or("");
    let tq = &label["technical_quality"];
    let cov = &label["coverage"];
    let links = &label["enrichments_and_links"];
    let _ = write!(
        s,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Data quality and utility label: {}</title><style>\
         body{{font:15px/1.45 system-ui,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;color:#1a202c}}\
         h1{{font-size:1.5em;margin-bottom:.2em}}h2{{font-size:1.15em;border-bottom:1px solid #e2e8f0;padding-bottom:.2em;margin-top:1.6em}}\
         .cards{{display:flex;flex-wrap:wrap;gap:.8em}}.card{{border:1px solid #e2e8f0;border-radius:6px;padding:.6em 1em;min-width:9em}}\
         .card b{{display:block;font-size:1.4em}}.grid{{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:1em}}\
         figure{{margin:0}}figcaption{{font-weight:600;font-size:.9em}}svg{{width:100%;height:auto}}.ax{{font-size:10px;fill:#4a5568}}.lg{{font-size:11px}}\
         table{{border-collapse:collapse;font-size:.88em;width:100%}}td,th{{border-bottom:1px solid #edf2f7;padding:.25em .5em;text-align:left}}\
         td.n{{text-align:right}}.w{{color:#a0aec0}}.Failed{{color:#c53030;font-weight:600}}.Error{{color:#975a16;font-weight:600}}\
         .muted{{color:#718096;font-size:.9em}}</style></head><body>",
        esc(store)
    );
    let _ = write!(
        s,
        "<h1>Data quality and utility label: {}</h1><p class=muted>Checked {} · {} · {}</p>",
        esc(store),
        num(&label["generated_at"]),
        esc(label["release"]["rule"].as_str().unwrap_or("")),
        esc(label["quality_management"]["tool"].as_str().unwrap_or(""))
    );
    let by = &tq["by_status"];
    let _ = write!(
        s,
        "<div class=cards><div class=card>Persons<b>{}</b></div><div class=card>Calendar years<b>{}–{}</b></div>\
         <div class=card>Person-years observed<b>{}</b></div><div class=card>Checks passed<b>{}</b></div>\
         <div class=card>Checks failed<b class=Failed>{}</b></div><div class=card>Not applicable<b>{}</b></div><div class=card>Errors<b>{}</b></div></div>",
        num(&cov["persons"]),
        num(&cov["calendar_years"]["first"]),
        num(&cov["calendar_years"]["last"]),
        num(&cov["person_years"]),
        num(&by["passed"]),
        num(&by["failed"]),
        num(&by["not_applicable"]),
        num(&by["error"])
    );

    s.push_str("<h2>Coverage</h2><div class=grid>");
    let obs: Vec<(String, Option<f64>)> = cov["observation_by_year"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| (num(&r["year"]), r["persons"].as_f64()))
                .collect()
        })
        .unwrap_or_default();
    if !obs.is_empty() {
        s.push_str(&bars("Persons observed, by calendar year", &obs, COLORS[0]));
    }
    let mut series: Vec<Series> = Vec::new();
    for r in cov["records_by_year"].as_array().into_iter().flatten() {
        let source = r["source"].as_str().unwrap_or("").to_owned();
        let Some(y) = r["year"].as_i64() else {
            continue;
        };
        match series.iter_mut().find(|(s, _)| *s == source) {
            Some((_, p)) => p.push((y, r["records"].as_f64())),
            None => series.push((source, vec![(y, r["records"].as_f64())])),
        }
    }
    s.push_str(&lines("Records by calendar year, per source", &series));
    s.push_str(&pyramid(
        cov["age_sex"].as_array().map(Vec::as_slice).unwrap_or(&[]),
    ));
    s.push_str(&prefectures(
        cov["prefecture"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    ));
    s.push_str("<div><table><tr><th>Source</th><th>Persons</th><th>Years with records</th></tr>");
    for r in cov["sources"].as_array().into_iter().flatten() {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=n>{}</td><td>{}–{}</td></tr>",
            num(&r["source"]),
            num(&r["persons"]),
            num(&r["first_year"]),
            num(&r["last_year"])
        );
    }
    s.push_str("</table>");
    let deliveries = cov["deliveries"].as_array().cloned().unwrap_or_default();
    if !deliveries.is_empty() {
        s.push_str("<table><tr><th>Deliveries of</th><th>Files</th><th>Median lag (days)</th><th>Largest lag (days)</th></tr>");
        for r in &deliveries {
            let _ = write!(
                s,
                "<tr><td>{}.{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                num(&r["source"]),
                num(&r["table"]),
                num(&r["deliveries"]),
                num(&r["median_lag_days"]),
                num(&r["max_lag_days"])
            );
        }
        s.push_str("</table>");
    }
    s.push_str("</div></div>");

    s.push_str("<h2>Technical quality: failing checks</h2>");
    let failing = tq["failing"].as_array().cloned().unwrap_or_default();
    if failing.is_empty() {
        s.push_str("<p>Every applicable check passed.</p>");
    } else {
        s.push_str("<table><tr><th>Status</th><th>Check</th><th>Table.field</th><th>Category</th><th>Severity</th><th>Violating rows</th><th>%</th><th>Threshold %</th></tr>");
        for r in &failing {
            let status = r["status"].as_str().unwrap_or("");
            let mut place = format!(
                "{}.{}",
                r["schema_name"].as_str().unwrap_or(""),
                r["table_name"].as_str().unwrap_or("")
            );
            if let Some(f) = r["field_name"].as_str() {
                place.push('.');
                place.push_str(f);
            }
            if let Some(c) = r["concept_id"].as_i64() {
                place.push_str(&format!(" (concept {c})"));
            }
            let _ = write!(
                s,
                "<tr><td class=\"{}\">{}</td><td title=\"{}\">{}</td><td>{}</td><td>{} {}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                esc(status),
                esc(status),
                esc(r["description"].as_str().unwrap_or("")),
                esc(r["check_type"].as_str().unwrap_or("")),
                esc(&place),
                esc(r["category"].as_str().unwrap_or("")),
                esc(r["subcategory"].as_str().unwrap_or("")),
                esc(r["severity"].as_str().unwrap_or("")),
                num(&r["violating_rows"]),
                num(&r["pct_violating"]),
                num(&r["threshold_pct"])
            );
        }
        s.push_str("</table>");
    }
    s.push_str("<p class=muted>By category: ");
    if let Some(m) = tq["by_category"].as_object() {
        let parts: Vec<String> = m
            .iter()
            .map(|(c, v)| {
                format!(
                    "{} {} passed, {} failed, {} not applicable",
                    esc(c),
                    num(&v["passed"]),
                    num(&v["failed"]),
                    num(&v["not_applicable"])
                )
            })
            .collect();
        s.push_str(&parts.join(" · "));
    }
    s.push_str("</p>");

    s.push_str("<h2>Enrichments and links</h2>");
    if links["linkage"].as_bool() == Some(true) {
        s.push_str("<table><tr><th>Source</th><th>Keys</th><th>Persons</th><th>Keys without a link</th><th>%</th><th>Persons in this source only</th></tr>");
        for r in links["sources"].as_array().into_iter().flatten() {
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                num(&r["source"]),
                num(&r["keys"]),
                num(&r["persons"]),
                num(&r["unlinked_keys"]),
                num(&r["pct_unlinked_keys"]),
                num(&r["persons_in_this_source_only"])
            );
        }
        s.push_str("</table><table><tr><th>Persons of</th><th>also in</th><th>Persons</th><th>Linkage rate %</th></tr>");
        for r in links["pairs"].as_array().into_iter().flatten() {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                num(&r["from"]),
                num(&r["to"]),
                num(&r["persons_in_both"]),
                num(&r["linkage_rate_pct"])
            );
        }
        s.push_str("</table>");
    } else {
        s.push_str("<p>One source, or no linkage table: nothing is linked.</p>");
    }

    s.push_str("<h2>Documentation, access and quality management</h2><ul>");
    let _ = write!(
        s,
        "<li>{}</li><li>Access: {}; analysts: {}</li><li>Checks: {}</li><li>{}</li></ul>",
        esc(label["documentation"]["data_model"].as_str().unwrap_or("")),
        esc(label["access_and_provision"]["interface"]
            .as_str()
            .unwrap_or("")),
        esc(label["access_and_provision"]["roles"]["analyst"]
            .as_str()
            .unwrap_or("")),
        esc(tq["framework"].as_str().unwrap_or("")),
        esc(label["quality_management"]["process"]
            .as_str()
            .unwrap_or(""))
    );
    s.push_str("<table><tr><th>Source</th><th>Table</th><th>Rows</th><th>CDM</th></tr>");
    for src in label["documentation"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for t in src["tables"].as_array().into_iter().flatten() {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td>{}</td></tr>",
                num(&src["name"]),
                num(&t["name"]),
                num(&t["rows"]),
                if t["cdm_table"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                }
            );
        }
    }
    s.push_str("</table></body></html>\n");
    s
}

/// Writes `label.json` and `label.html` into `out` (created if missing).
pub fn write(label: &Value, out: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    let json = serde_json::to_string_pretty(label).map_err(std::io::Error::other)?;
    std::fs::write(out.join("label.json"), json + "\n")?;
    std::fs::write(out.join("label.html"), render(label))
}
