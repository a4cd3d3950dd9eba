//! A project's saved results and their way out: release requests, the
//! automatic output checks a reviewer sees, and the outbox of approved
//! outputs with their provenance.
//!
//! `results/<name>.arrow` and `.json` (the rows and how they were made),
//! `releases/<id>.json` (a request, its checks and its decision),
//! `outbox/<id>/` (the released CSV and `provenance.json`, written in a
//! temporary folder and renamed whole).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{EngineError, Result, now, write_whole};

/// How a saved result was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultMeta {
    pub name: String,
    pub query: String,
    pub user: String,
    pub created_at: String,
    /// Computed under the analyst's release (k, dominance, noise, rounding).
    pub released_by_rules: bool,
    /// Per column: a released number (not a group label).
    pub measures: Vec<bool>,
}

/// A saved result: its rows and how they were made.
pub struct SavedResult {
    pub meta: ResultMeta,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// One automatic check of a release request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// An automatic check failed: it cannot be approved.
    Failed,
    /// Waiting for a steward.
    Pending,
    Approved,
    Rejected,
}

/// A release request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub project: String,
    pub result: String,
    pub purpose: String,
    pub requested_by: String,
    pub requested_at: String,
    pub status: RequestStatus,
    pub checks: Vec<Check>,
    #[serde(default)]
    pub reviewer: Option<String>,
    #[serde(default)]
    pub decided_at: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// SHA-256 of the released CSV.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// A project's workspace and outputs, in its folder.
#[derive(Debug, Clone)]
pub struct Outputs {
    dir: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |e| EngineError::Unsupported(format!("{}: {e}", path.display()))
}

impl Outputs {
    pub fn new(project_dir: &Path) -> Outputs {
        Outputs {
            dir: project_dir.to_owned(),
        }
    }

    fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// The outbox of approved outputs.
    pub fn outbox(&self) -> PathBuf {
        self.dir.join("outbox")
    }

    /// Saves a result: rows first, then the description that makes it exist.
    pub fn save_result(
        &self,
        meta: &ResultMeta,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<()> {
        crate::cohorts::check_name(&meta.name)?;
        if self
            .requests()?
            .iter()
            .any(|r| r.result == meta.name && r.status == RequestStatus::Pending)
        {
            return Err(EngineError::Unsupported(format!(
                "result \"{}\" is waiting for review and cannot be replaced; save it under another name",
                meta.name
            )));
        }
        let mut bytes = Vec::new();
        {
            let mut w = FileWriter::try_new(&mut bytes, &schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        let dir = self.results_dir();
        write_whole(&dir.join(format!("{}.arrow", meta.name)), &bytes)?;
        let text = serde_json::to_string_pretty(meta)
            .map_err(|e| EngineError::Unsupported(e.to_string()))?;
        write_whole(&dir.join(format!("{}.json", meta.name)), text.as_bytes())
    }

    /// Every saved result.
    pub fn results(&self) -> Result<Vec<SavedResult>> {
        let dir = self.results_dir();
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".json")
                    .filter(|n| !n.starts_with('.'))
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        for n in names {
            out.push(self.result(&n)?);
        }
        Ok(out)
    }

    /// Saved result `name`.
    pub fn result(&self, name: &str) -> Result<SavedResult> {
        self.result_and_bytes(name).map(|(saved, _)| saved)
    }

    /// Saved result `name` and the bytes of its rows' file, read once.
    fn result_and_bytes(&self, name: &str) -> Result<(SavedResult, Vec<u8>)> {
        let dir = self.results_dir();
        let missing = || EngineError::Unsupported(format!("result \"{name}\" does not exist"));
        crate::cohorts::check_name(name).map_err(|_| missing())?;
        let text =
            std::fs::read_to_string(dir.join(format!("{name}.json"))).map_err(|_| missing())?;
        let meta: ResultMeta = serde_json::from_str(&text)
            .map_err(|e| EngineError::Unsupported(format!("result \"{name}\": {e}")))?;
        let path = dir.join(format!("{name}.arrow"));
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let reader = FileReader::try_new(std::io::Cursor::new(bytes.as_slice()), None)?;
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        Ok((
            SavedResult {
                meta,
                schema,
                batches,
            },
            bytes,
        ))
    }

    /// Every release request, oldest first.
    pub fn requests(&self) -> Result<Vec<Request>> {
        let dir = self.dir.join("releases");
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') || !n.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).map_err(io(&e.path()))?;
            let r: Request = serde_json::from_str(&text).map_err(|err| {
                EngineError::Unsupported(format!("{}: {err}", e.path().display()))
            })?;
            out.push(r);
        }
        out.sort_by_key(|r| {
            r.id.trim_start_matches('r')
                .parse::<u64>()
                .unwrap_or(u64::MAX)
        });
        Ok(out)
    }

    /// Request `id`.
    pub fn request(&self, id: &str) -> Result<Request> {
        self.requests()?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| {
                EngineError::Unsupported(format!("release request \"{id}\" does not exist"))
            })
    }

    fn save_request(&self, r: &Request) -> Result<()> {
        let text =
            serde_json::to_string_pretty(r).map_err(|e| EngineError::Unsupported(e.to_string()))?;
        write_whole(
            &self.dir.join("releases").join(format!("{}.json", r.id)),
            text.as_bytes(),
        )
    }

    /// Files a release request for result `name` after the automatic checks;
    /// a request that fails one is recorded as failed.
    pub fn request_release(
        &self,
        project: &str,
        name: &str,
        purpose: &str,
        user: &str,
        k: u64,
        rounding: u64,
    ) -> Result<Request> {
        // The rows checked are the rows kept for review: one read.
        let (result, rows) = self.result_and_bytes(name)?;
        let earlier: Vec<(Request, SavedResult)> = self
            .requests()?
            .into_iter()
            .filter(|r| matches!(r.status, RequestStatus::Approved | RequestStatus::Pending))
            .filter_map(|r| {
                let released = self.released(&r).ok()?;
                Some((r, released))
            })
            .collect();
        let checks = checks(&result, &earlier, k, rounding);
        let next = self.requests()?.len() + 1;
        let request = Request {
            id: format!("r{next}"),
            project: project.to_owned(),
            result: name.to_owned(),
            purpose: purpose.to_owned(),
            requested_by: user.to_owned(),
            requested_at: now(),
            status: if checks.iter().all(|c| c.passed) {
                RequestStatus::Pending
            } else {
                RequestStatus::Failed
            },
            checks,
            reviewer: None,
            decided_at: None,
            reason: None,
            sha256: None,
        };
        // The rows as requested, kept with the request: what is reviewed is
        // what leaves, whatever happens to the result afterwards.
        let releases = self.dir.join("releases");
        std::fs::create_dir_all(&releases).map_err(io(&releases))?;
        let snapshot = releases.join(format!("{}.arrow", request.id));
        write_whole(&snapshot, &rows)?;
        self.save_request(&request)?;
        Ok(request)
    }

    /// The rows of a request, as requested.
    pub fn released(&self, r: &Request) -> Result<SavedResult> {
        let mut saved = self.result(&r.result).map_err(|_| {
            EngineError::Unsupported(format!("result \"{}\" does not exist", r.result))
        });
        let path = self.dir.join("releases").join(format!("{}.arrow", r.id));
        if let Ok(file) = std::fs::File::open(&path) {
            let reader = FileReader::try_new(file, None)?;
            let schema = reader.schema();
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
            let meta = match saved {
                Ok(s) => s.meta,
                Err(_) => ResultMeta {
                    name: r.result.clone(),
                    query: String::new(),
                    user: r.requested_by.clone(),
                    created_at: r.requested_at.clone(),
                    released_by_rules: true,
                    measures: vec![true; schema.fields().len()],
                },
            };
            saved = Ok(SavedResult {
                meta,
                schema,
                batches,
            });
        }
        saved
    }

    /// Approves a pending request: writes the outbox folder whole, then the
    /// decision. Returns the request and the SHA-256 of the released CSV.
    pub fn approve(
        &self,
        id: &str,
        reviewer: &str,
        provenance: serde_json::Value,
    ) -> Result<Request> {
        let mut r = self.request(id)?;
        match r.status {
            RequestStatus::Pending => {}
            RequestStatus::Failed => {
                return Err(EngineError::Unsupported(format!(
                    "release request \"{id}\" failed its automatic checks and cannot be approved"
                )));
            }
            s => {
                return Err(EngineError::Unsupported(
                    format!("release request \"{id}\" is already {s:?}").to_lowercase(),
                ));
            }
        }
        let saved = self.released(&r)?;
        let mut csv = Vec::new();
        {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut csv);
            for b in &saved.batches {
                w.write(b)?;
            }
        }
        let sha = hex::encode(Sha256::digest(&csv));
        let final_dir = self.outbox().join(id);
        if !final_dir.exists() {
            let tmp = self
                .outbox()
                .join(format!(".{id}.{}.tmp", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
            let mut p = provenance;
            if let Some(o) = p.as_object_mut() {
                o.insert("request".into(), serde_json::json!(id));
                o.insert("result".into(), serde_json::json!(r.result));
                o.insert("query".into(), serde_json::json!(saved.meta.query));
                o.insert("requested_by".into(), serde_json::json!(r.requested_by));
                o.insert("requested_at".into(), serde_json::json!(r.requested_at));
                o.insert("purpose".into(), serde_json::json!(r.purpose));
                o.insert(
                    "checks".into(),
                    serde_json::to_value(&r.checks).unwrap_or_default(),
                );
                o.insert("reviewer".into(), serde_json::json!(reviewer));
                o.insert("approved_at".into(), serde_json::json!(now()));
                o.insert("sha256".into(), serde_json::json!(sha));
            }
            write_whole(&tmp.join(format!("{}.csv", r.result)), &csv)?;
            let text = serde_json::to_string_pretty(&p)
                .map_err(|e| EngineError::Unsupported(e.to_string()))?;
            write_whole(&tmp.join("provenance.json"), text.as_bytes())?;
            std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
        }
        r.status = RequestStatus::Approved;
        r.reviewer = Some(reviewer.to_owned());
        r.decided_at = Some(now());
        r.sha256 = Some(sha);
        self.save_request(&r)?;
        Ok(r)
    }

    /// Rejects a pending request.
    pub fn reject(&self, id: &str, reviewer: &str, reason: &str) -> Result<Request> {
        let mut r = self.request(id)?;
        if !matches!(r.status, RequestStatus::Pending | RequestStatus::Failed) {
            return Err(EngineError::Unsupported(format!(
                "release request \"{id}\" is already decided"
            )));
        }
        r.status = RequestStatus::Rejected;
        r.reviewer = Some(reviewer.to_owned());
        r.decided_at = Some(now());
        r.reason = Some(reason.to_owned());
        self.save_request(&r)?;
        Ok(r)
    }

    /// Removes the workspace (cohorts, results), keeping requests and the
    /// outbox; with `archive`, moves it to `archive/` instead.
    pub fn end(&self, archive: bool) -> Result<()> {
        for part in ["cohorts", "results"] {
            let from = self.dir.join(part);
            if !from.exists() {
                continue;
            }
            if archive {
                let to = self.dir.join("archive").join(part);
                std::fs::create_dir_all(self.dir.join("archive")).map_err(io(&to))?;
                std::fs::rename(&from, &to).map_err(io(&to))?;
            } else {
                std::fs::remove_dir_all(&from).map_err(io(&from))?;
            }
        }
        Ok(())
    }
}

/// The values of an integer-valued column, NULL as `None`.
fn integers(batches: &[RecordBatch], i: usize) -> Option<Vec<Option<i64>>> {
    let mut out = Vec::new();
    for b in batches {
        let c = datafusion::arrow::compute::cast(b.column(i), &DataType::Int64).ok()?;
        if !b.column(i).data_type().is_integer() {
            return None;
        }
        let c = c.as_primitive::<Int64Type>();
        out.extend((0..c.len()).map(|r| c.is_valid(r).then(|| c.value(r))));
    }
    Some(out)
}

/// The group labels of each row (the columns that are not released numbers).
fn labels(saved: &SavedResult) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for b in &saved.batches {
        for r in 0..b.num_rows() {
            let mut key = Vec::new();
            for (i, m) in saved.meta.measures.iter().enumerate() {
                if !m && i < b.num_columns() {
                    let v = datafusion::arrow::util::display::array_value_to_string(b.column(i), r)
                        .unwrap_or_default();
                    key.push(if b.column(i).is_null(r) {
                        "\u{0}NULL".into()
                    } else {
                        v
                    });
                }
            }
            rows.push(key);
        }
    }
    rows
}

/// The automatic checks of a request (details name columns and releases,
/// never values).
pub fn checks(
    result: &SavedResult,
    earlier: &[(Request, SavedResult)],
    k: u64,
    rounding: u64,
) -> Vec<Check> {
    let mut out = Vec::new();
    let names: Vec<&str> = result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    out.push(Check {
        check: "release rules".into(),
        passed: result.meta.released_by_rules,
        detail: if result.meta.released_by_rules {
            format!("computed under the analyst's release: every number rests on at least {k} persons and is not dominated by one or two of them")
        } else {
            "computed without the analyst's release (a steward's exact result): recompute it as analyst".into()
        },
    });
    let counts: Vec<(usize, Vec<Option<i64>>)> = result
        .meta
        .measures
        .iter()
        .enumerate()
        .filter(|(_, m)| **m)
        .filter_map(|(i, _)| integers(&result.batches, i).map(|v| (i, v)))
        .collect();
    let small: Vec<&str> = counts
        .iter()
        .filter(|(_, v)| v.iter().flatten().any(|&x| x != 0 && x.unsigned_abs() < k))
        .map(|(i, _)| names[*i])
        .collect();
    out.push(Check {
        check: "k-rule".into(),
        passed: small.is_empty(),
        detail: if small.is_empty() {
            format!("no count below {k}")
        } else {
            format!("counts below {k} in column(s) {}", small.join(", "))
        },
    });
    let unrounded: Vec<&str> = counts
        .iter()
        .filter(|(_, v)| rounding > 1 && v.iter().flatten().any(|&x| x % rounding as i64 != 0))
        .map(|(i, _)| names[*i])
        .collect();
    out.push(Check {
        check: "rounding".into(),
        passed: unrounded.is_empty(),
        detail: if unrounded.is_empty() {
            format!("counts are multiples of {rounding}")
        } else {
            format!(
                "counts not rounded to {rounding} in column(s) {}",
                unrounded.join(", ")
            )
        },
    });
    // Secondary suppression: a withheld cell next to a total of its column.
    let withheld: Vec<usize> = result
        .meta
        .measures
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            **m && result
                .batches
                .iter()
                .any(|b| *i < b.num_columns() && b.column(*i).null_count() > 0)
        })
        .map(|(i, _)| i)
        .collect();
    let totals = labels(result).iter().any(|row| {
        row.iter().any(|v| {
            let v = v.trim().to_lowercase();
            v == "\u{0}null" || v == "total" || v == "all" || v == "合計" || v == "計"
        })
    });
    let exposed = !withheld.is_empty() && totals;
    out.push(Check {
        check: "secondary suppression".into(),
        passed: !exposed,
        detail: if exposed {
            format!(
                "column(s) {} have withheld cells and the table holds a total row: the withheld cells could be recovered by subtraction; remove the total or the withheld rows",
                withheld.iter().map(|&i| names[i]).collect::<Vec<_>>().join(", ")
            )
        } else {
            "no withheld cell can be recovered from a total in the same table".into()
        },
    });
    // Differencing against the project's earlier releases.
    let mut differences = Vec::new();
    let here = labels(result);
    for (r, e) in earlier {
        let their: Vec<&str> = e
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        if their != names || e.meta.measures != result.meta.measures {
            continue;
        }
        let there = labels(e);
        for (i, mine) in &counts {
            let Some(theirs) = integers(&e.batches, *i) else {
                continue;
            };
            for (a, la) in mine.iter().zip(&here) {
                for (b, lb) in theirs.iter().zip(&there) {
                    if la == lb
                        && let (Some(a), Some(b)) = (a, b)
                    {
                        let d = (a - b).unsigned_abs();
                        if d > 0 && d < k {
                            differences.push(format!("{} (column {})", r.id, names[*i]));
                        }
                    }
                }
            }
        }
    }
    differences.sort();
    differences.dedup();
    out.push(Check {
        check: "differencing".into(),
        passed: differences.is_empty(),
        detail: if differences.is_empty() {
            "no cell differs from an earlier release of the project by fewer than k persons".into()
        } else {
            format!(
                "a cell differs by fewer than {k} from the same cell of earlier release(s) {}: the difference would describe fewer than {k} persons",
                differences.join(", ")
            )
        },
    });
    out
}

/// Reads the rows of a saved result as a table (for `results.<name>`).
pub fn table(saved: &SavedResult) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    Ok(Arc::new(datafusion::datasource::MemTable::try_new(
        saved.schema.clone(),
        vec![saved.batches.clone()],
    )?))
}

/// Per output column of a plan: whether it holds a released number (an
/// aggregate, or a value computed from one) rather than a group label.
/// Unknown plan nodes count every column as a number (checked as such).
pub fn measures(plan: &datafusion::logical_expr::LogicalPlan) -> Vec<bool> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Distinct, Expr, JoinType, LogicalPlan};
    let n = plan.schema().fields().len();
    let of = |e: &Expr, input: &LogicalPlan, m: &[bool]| {
        let mut found = false;
        let _ = e.apply(|x| {
            match x {
                Expr::ScalarFunction(f) if f.name().starts_with("tsunagu_release") => found = true,
                Expr::AggregateFunction(_) | Expr::WindowFunction(_) => found = true,
                Expr::Column(c) => {
                    if let Ok(i) = input.schema().index_of_column(c) {
                        found |= m.get(i).copied().unwrap_or(true);
                    }
                }
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
        found
    };
    let out = match plan {
        LogicalPlan::Projection(p) => {
            let m = measures(&p.input);
            p.expr.iter().map(|e| of(e, &p.input, &m)).collect()
        }
        LogicalPlan::Filter(f) => measures(&f.input),
        LogicalPlan::Sort(s) => measures(&s.input),
        LogicalPlan::Limit(l) => measures(&l.input),
        LogicalPlan::SubqueryAlias(s) => measures(&s.input),
        LogicalPlan::Repartition(r) => measures(&r.input),
        LogicalPlan::Distinct(Distinct::All(i)) => measures(i),
        LogicalPlan::Aggregate(a) => {
            let m = measures(&a.input);
            let mut v: Vec<bool> = a.group_expr.iter().map(|g| of(g, &a.input, &m)).collect();
            v.extend(a.aggr_expr.iter().map(|_| true));
            v
        }
        LogicalPlan::Window(w) => {
            let mut v = measures(&w.input);
            v.extend(w.window_expr.iter().map(|_| true));
            v
        }
        LogicalPlan::Join(j) => match j.join_type {
            JoinType::LeftSemi | JoinType::LeftAnti => measures(&j.left),
            JoinType::RightSemi | JoinType::RightAnti => measures(&j.right),
            _ => {
                let mut v = measures(&j.left);
                v.extend(measures(&j.right));
                v
            }
        },
        LogicalPlan::Union(u) => {
            let mut v = vec![false; n];
            for i in &u.inputs {
                for (a, b) in v.iter_mut().zip(measures(i)) {
                    *a |= b;
                }
            }
            v
        }
        LogicalPlan::TableScan(_) | LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
            vec![false; n]
        }
        _ => vec![true; n],
    };
    if out.len() == n { out } else { vec![true; n] }
}
