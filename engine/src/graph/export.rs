//! The graph as a session reads it, written for graph tools: GraphML (Gephi,
//! Cytoscape, NetworkX, yEd) or JSON-LD (RDF stores, linked-data tools).
//!
//! Only the concepts that some exported edge touches are written.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use serde_json::{Map, Value, json};

use crate::session::Session;
use crate::{EngineError, Result};

/// The formats the graph is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    GraphMl,
    JsonLd,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "graphml" => Ok(Format::GraphMl),
            "jsonld" | "json-ld" => Ok(Format::JsonLd),
            other => Err(format!(
                "unknown graph format {other:?} (graphml or jsonld)"
            )),
        }
    }
}

/// One value of a row, as text (`None` for NULL).
fn text(b: &RecordBatch, c: usize, r: usize) -> Option<String> {
    let a = b.column(c);
    if a.is_null(r) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Int64 => a.as_primitive::<Int64Type>().value(r).to_string(),
        DataType::Float64 => a.as_primitive::<Float64Type>().value(r).to_string(),
        DataType::Utf8 => a.as_string::<i32>().value(r).to_owned(),
        DataType::Utf8View => a.as_string_view().value(r).to_owned(),
        _ => return None,
    })
}

/// Rows as (column name, value) lists.
fn rows(batches: &[RecordBatch]) -> Vec<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for b in batches {
        let schema = b.schema();
        for r in 0..b.num_rows() {
            out.push(
                (0..b.num_columns())
                    .map(|c| (schema.field(c).name().clone(), text(b, c, r)))
                    .collect(),
            );
        }
    }
    out
}

/// Exports the edges `filter` selects (a SQL condition on `graph.edges`,
/// e.g. `provenance = 'data'`) and the concepts they touch, as `session`
/// may read them.
pub async fn export(session: &Session, format: Format, filter: Option<&str>) -> Result<String> {
    let condition = filter.unwrap_or("true");
    if condition.contains(';') {
        return Err(EngineError::Unsupported(
            "the edge filter is one SQL condition".into(),
        ));
    }
    let edges = session
        .sql(&format!(
            "SELECT * FROM graph.edges WHERE {condition} ORDER BY concept_id_1, concept_id_2, relationship_id, window_days"
        ))
        .await?;
    let edges = rows(&edges);
    let ids: BTreeSet<i64> = edges
        .iter()
        .flat_map(|e| {
            e.iter()
                .filter(|(n, _)| n == "concept_id_1" || n == "concept_id_2")
                .filter_map(|(_, v)| v.as_deref()?.parse().ok())
        })
        .collect();
    let nodes = if ids.is_empty() {
        Vec::new()
    } else {
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        rows(
            &session
                .sql(&format!(
                    "SELECT * FROM graph.nodes WHERE concept_id IN ({}) ORDER BY concept_id",
                    list.join(", ")
                ))
                .await?,
        )
    };
    Ok(match format {
        Format::GraphMl => graphml(&nodes, &edges),
        Format::JsonLd => json_ld(&nodes, &edges),
    })
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

type Row = Vec<(String, Option<String>)>;

fn graphml(nodes: &[Row], edges: &[Row]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:schemaLocation=\"http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd\">\n",
    );
    let key_type = |name: &str| match name {
        "value" | "lower_95" => "double",
        "persons" | "window_days" => "long",
        _ => "string",
    };
    let mut keys = |rows: &[Row], on: &str, skip: &[&str]| {
        let widest = rows.iter().max_by_key(|r| r.len());
        if let Some(first) = widest {
            for (name, _) in first.iter().filter(|(n, _)| !skip.contains(&n.as_str())) {
                let _ = writeln!(
                    out,
                    "  <key id=\"{on}_{name}\" for=\"{on}\" attr.name=\"{name}\" attr.type=\"{}\"/>",
                    key_type(name)
                );
            }
        }
    };
    keys(nodes, "node", &["concept_id"]);
    keys(edges, "edge", &["concept_id_1", "concept_id_2"]);
    out.push_str("  <graph id=\"tsunagu\" edgedefault=\"directed\">\n");
    let value = |row: &Row, name: &str| {
        row.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    for n in nodes {
        let _ = writeln!(
            out,
            "    <node id=\"c{}\">",
            escape(&value(n, "concept_id"))
        );
        for (name, v) in n.iter().filter(|(n, _)| n != "concept_id") {
            if let Some(v) = v {
                let _ = writeln!(out, "      <data key=\"node_{name}\">{}</data>", escape(v));
            }
        }
        out.push_str("    </node>\n");
    }
    for (i, e) in edges.iter().enumerate() {
        let _ = writeln!(
            out,
            "    <edge id=\"e{i}\" source=\"c{}\" target=\"c{}\">",
            escape(&value(e, "concept_id_1")),
            escape(&value(e, "concept_id_2"))
        );
        for (name, v) in e
            .iter()
            .filter(|(n, _)| n != "concept_id_1" && n != "concept_id_2")
        {
            if let Some(v) = v {
                let _ = writeln!(out, "      <data key=\"edge_{name}\">{}</data>", escape(v));
            }
        }
        out.push_str("    </edge>\n");
    }
    out.push_str("  </graph>\n</graphml>\n");
    out
}

fn json_ld(nodes: &[Row], edges: &[Row]) -> String {
    let mut graph = Vec::new();
    let number = |v: &str| -> Value {
        v.parse::<i64>()
            .map(Value::from)
            .or_else(|_| v.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::from(v))
    };
    for n in nodes {
        let mut o = Map::new();
        for (name, v) in n {
            let Some(v) = v else { continue };
            match name.as_str() {
                "concept_id" => {
                    o.insert("@id".into(), Value::from(format!("concept:{v}")));
                    o.insert("@type".into(), Value::from("Concept"));
                    o.insert("concept_id".into(), number(v));
                }
                "concept_name_ja" => {
                    o.insert(
                        "concept_name_ja".into(),
                        json!({"@value": v, "@language": "ja"}),
                    );
                }
                _ => {
                    o.insert(name.clone(), Value::from(v.as_str()));
                }
            }
        }
        graph.push(Value::Object(o));
    }
    for (i, e) in edges.iter().enumerate() {
        let mut o = Map::new();
        o.insert("@id".into(), Value::from(format!("edge:{i}")));
        o.insert("@type".into(), Value::from("Edge"));
        for (name, v) in e {
            let Some(v) = v else { continue };
            match name.as_str() {
                "concept_id_1" => {
                    o.insert("source".into(), json!({"@id": format!("concept:{v}")}));
                }
                "concept_id_2" => {
                    o.insert("target".into(), json!({"@id": format!("concept:{v}")}));
                }
                "value" | "lower_95" | "persons" | "window_days" => {
                    o.insert(name.clone(), number(v));
                }
                _ => {
                    o.insert(name.clone(), Value::from(v.as_str()));
                }
            }
        }
        graph.push(Value::Object(o));
    }
    let doc = json!({
        "@context": {
            "@vocab": "urn:tsunagu:graph:",
            "concept": "urn:tsunagu:concept:",
            "edge": "urn:tsunagu:edge:",
            "source": {"@type": "@id"},
            "target": {"@type": "@id"}
        },
        "@graph": graph
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
