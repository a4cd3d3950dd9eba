//! RWD functions for DataFusion: episodes, exposure windows, cohort bitmaps
//! and the vocabulary graph. Each is a plain DataFusion UDF that can be
//! registered on any `SessionContext`; none depends on Tsunagu's catalog.

pub mod bitmaps;
pub mod concept_sets;
pub mod disclosure;
pub mod docs;
pub mod episodes;
pub mod graph;
pub mod vocab;
pub mod windows;

use std::sync::Arc;

pub use disclosure::{Disclosure, disclosure};

use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::prelude::SessionContext;

/// Every scalar RWD function.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    let mut v = vec![
        Arc::new(ScalarUDF::new_from_impl(windows::InWindow::default())),
        Arc::new(ScalarUDF::new_from_impl(windows::OverlapDays::default())),
        Arc::new(ScalarUDF::new_from_impl(windows::WindowDays::default())),
    ];
    for name in ["rb_and", "rb_or", "rb_andnot", "rb_xor"] {
        v.push(Arc::new(ScalarUDF::new_from_impl(bitmaps::RbSetOp::new(
            name,
        ))));
    }
    for name in ["rb_cardinality", "rb_contains", "rb_to_array"] {
        v.push(Arc::new(ScalarUDF::new_from_impl(bitmaps::RbRead::new(
            name,
        ))));
    }
    v
}

/// Every aggregate RWD function.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    let mut v = vec![Arc::new(AggregateUDF::new_from_impl(
        episodes::Episodes::default(),
    ))];
    for name in ["rb_build_agg", "rb_or_agg", "rb_and_agg"] {
        v.push(Arc::new(AggregateUDF::new_from_impl(bitmaps::RbAgg::new(
            name,
        ))));
    }
    v
}

/// Every window RWD function.
pub fn window_functions() -> Vec<Arc<WindowUDF>> {
    vec![Arc::new(WindowUDF::new_from_impl(
        episodes::EpisodeNumber::default(),
    ))]
}

/// Registers the vocabulary graph functions over `graph` on a context.
pub fn register_vocabulary(ctx: &SessionContext, graph: Arc<vocab::VocabGraph>) {
    ctx.register_udf(ScalarUDF::new_from_impl(vocab::IsA::new(graph.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(graph::ConceptPath::new(
        graph.clone(),
    )));
    ctx.register_udf(ScalarUDF::new_from_impl(graph::ConceptReachable::new(
        graph.clone(),
    )));
    ctx.register_udtf(
        "descendants",
        Arc::new(vocab::Hierarchy::new(graph.clone(), true)),
    );
    ctx.register_udtf(
        "ancestors",
        Arc::new(vocab::Hierarchy::new(graph.clone(), false)),
    );
    ctx.register_udtf("related", Arc::new(vocab::Related::new(graph.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(concept_sets::InConceptSet::new(
        graph.clone(),
    )));
    ctx.register_udtf(
        "concept_set",
        Arc::new(concept_sets::ConceptSet::new(graph)),
    );
}

/// Registers every RWD function on a context (the vocabulary graph ones
/// with [`register_vocabulary`]).
pub fn register(ctx: &SessionContext) {
    for f in scalar_functions() {
        ctx.register_udf(f.as_ref().clone());
    }
    for f in aggregate_functions() {
        ctx.register_udaf(f.as_ref().clone());
    }
    for f in window_functions() {
        ctx.register_udwf(f.as_ref().clone());
    }
}

/// Every RWD function with its kind and `Documentation`; `extra` adds
/// functions defined elsewhere as (name, kind, doc).
pub fn documented(
    extra: Vec<(
        String,
        &'static str,
        datafusion::logical_expr::Documentation,
    )>,
) -> Vec<(
    String,
    &'static str,
    datafusion::logical_expr::Documentation,
)> {
    use datafusion::logical_expr::Documentation;
    let graph = Arc::new(vocab::VocabGraph::default());
    let mut docs: Vec<(String, &'static str, Documentation)> = extra;
    for f in scalar_functions() {
        if let Some(d) = f.documentation() {
            docs.push((f.name().to_owned(), "scalar", d.clone()));
        }
    }
    for f in aggregate_functions() {
        if let Some(d) = f.documentation() {
            docs.push((f.name().to_owned(), "aggregate", d.clone()));
        }
    }
    for f in window_functions() {
        if let Some(d) = f.documentation() {
            docs.push((f.name().to_owned(), "window", d.clone()));
        }
    }
    let is_a = ScalarUDF::new_from_impl(vocab::IsA::new(graph.clone()));
    docs.push((
        "is_a".into(),
        "scalar",
        is_a.documentation().cloned().expect("documented"),
    ));
    for down in [true, false] {
        let h = vocab::Hierarchy::new(graph.clone(), down);
        docs.push((h.name().into(), "table", h.documentation().clone()));
    }
    docs.push((
        "related".into(),
        "table",
        vocab::Related::documentation().clone(),
    ));
    let path = ScalarUDF::new_from_impl(graph::ConceptPath::new(graph.clone()));
    docs.push((
        "concept_path".into(),
        "scalar",
        path.documentation().cloned().expect("documented"),
    ));
    let reachable = ScalarUDF::new_from_impl(graph::ConceptReachable::new(graph.clone()));
    docs.push((
        "concept_reachable".into(),
        "scalar",
        reachable.documentation().cloned().expect("documented"),
    ));
    let in_set = ScalarUDF::new_from_impl(concept_sets::InConceptSet::new(graph));
    docs.push((
        "in_concept_set".into(),
        "scalar",
        in_set.documentation().cloned().expect("documented"),
    ));
    docs.push((
        "concept_set".into(),
        "table",
        concept_sets::ConceptSet::documentation().clone(),
    ));
    docs
}

/// The function reference in Markdown, generated from each function's
/// `Documentation`; `extra` adds functions defined elsewhere as (name, kind, doc).
pub fn reference_markdown(
    extra: Vec<(
        String,
        &'static str,
        datafusion::logical_expr::Documentation,
    )>,
) -> String {
    let docs = documented(extra);
    let mut out = String::from(
        "# RWD function reference\n\nGenerated from the functions' documentation by `TSUNAGU_UPDATE_DOCS=1 cargo test -p tsunagu-tests functions_reference`; do not edit by hand.\n",
    );
    for section in [
        docs::EPISODES,
        docs::WINDOWS,
        docs::COHORTS,
        docs::VOCABULARY,
    ] {
        out.push_str(&format!(
            "\n## {}\n\n{}\n",
            section.label,
            section.description.unwrap_or_default()
        ));
        for (name, kind, d) in docs
            .iter()
            .filter(|(_, _, d)| d.doc_section.label == section.label)
        {
            out.push_str(&format!(
                "\n### `{name}` ({kind})\n\n{}\n\n```sql\n{}\n```\n",
                d.description, d.syntax_example
            ));
            if let Some(args) = &d.arguments {
                out.push_str("\n| argument | meaning |\n|---|---|\n");
                for (a, m) in args {
                    out.push_str(&format!("| `{a}` | {m} |\n"));
                }
            }
            if let Some(example) = &d.sql_example {
                out.push_str(&format!("\nExample:\n\n```sql\n{example}\n```\n"));
            }
        }
    }
    out
}
