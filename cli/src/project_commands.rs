//! `tsunagu project ...` and `tsunagu release ...`: a steward's side of a
//! project's journey, every step audited.

use tsunagu_engine::Engine;
use tsunagu_engine::projects::{self, Project, Scope, Status, outputs::Outputs};

use crate::{ProjectCmd, ReleaseCmd};

fn steward() -> String {
    std::env::var("USER").unwrap_or_else(|_| "tsunagu".into())
}

/// Records a steward's command in the audit chain.
fn audit(engine: &Engine, text: &str) -> Result<(), String> {
    let session = engine.session().map_err(|e| e.to_string())?;
    session.log_command(text, None).map_err(|e| e.to_string())
}

fn date(text: &str) -> Result<chrono::NaiveDate, String> {
    projects::parse_date(text)
}

fn show(p: &Project) -> Result<String, String> {
    serde_json::to_string_pretty(p).map_err(|e| e.to_string())
}

pub async fn run(engine: &Engine, command: ProjectCmd) -> Result<(), String> {
    let list = engine.projects();
    let err = |e: tsunagu_engine::EngineError| e.to_string();
    match command {
        ProjectCmd::Create {
            id,
            title,
            purpose,
            members,
            tables,
            columns,
            period_start,
            period_end,
            population,
            start,
            end,
            k,
            rounding,
            archive_at_end,
        } => {
            let mut scope = Scope {
                tables,
                population,
                period_start: period_start.as_deref().map(date).transpose()?,
                period_end: period_end.as_deref().map(date).transpose()?,
                ..Scope::default()
            };
            for c in columns {
                let Some((table, cols)) = c.split_once('=') else {
                    return Err(format!("--columns {c:?}: expected schema.table=col,col"));
                };
                scope.columns.insert(
                    table.trim().to_owned(),
                    cols.split(',').map(|c| c.trim().to_owned()).collect(),
                );
            }
            let (start, end) = (date(&start)?, date(&end)?);
            let project = Project {
                id: id.clone(),
                title,
                purpose,
                members,
                scope,
                start,
                end,
                k,
                rounding,
                status: Status::Proposed,
                created_by: steward(),
                created_at: projects::now(),
                approved_by: None,
                closed_at: None,
                salt: projects::new_salt(),
                population_size: None,
                archive_at_end,
            };
            engine.project_admin().propose(&project).map_err(err)?;
            audit(engine, &format!("PROJECT CREATE {id}"))?;
            println!("project {id} proposed; approve it with: tsunagu project approve {id}");
        }
        ProjectCmd::Approve { id } => {
            let p = engine.approve_project(&id, &steward()).await.map_err(err)?;
            audit(engine, &format!("PROJECT APPROVE {id}"))?;
            match p.population_size {
                Some(n) => println!("project {id} approved; population of {n} persons"),
                None => println!("project {id} approved"),
            }
        }
        ProjectCmd::AddMember { id, user } => {
            engine.project_admin().add_member(&id, &user).map_err(err)?;
            audit(engine, &format!("PROJECT ADD MEMBER {id} {user}"))?;
            println!("{user} is a member of project {id}");
        }
        ProjectCmd::Show { id } => {
            println!("{}", show(&list.load(&id).map_err(err)?)?);
        }
        ProjectCmd::List => {
            for p in list.list().map_err(err)? {
                println!(
                    "{}\t{:?}\t{} to {}\t{}",
                    p.id, p.status, p.start, p.end, p.title
                );
            }
        }
        ProjectCmd::Close { id, archive } => {
            engine.project_admin().close(&id, archive).map_err(err)?;
            audit(
                engine,
                &format!(
                    "PROJECT CLOSE {id} ({})",
                    if archive {
                        "workspace archived"
                    } else {
                        "workspace deleted"
                    }
                ),
            )?;
            println!("project {id} closed");
        }
        ProjectCmd::Report { id } => {
            let p = list.load(&id).map_err(err)?;
            println!("project {id}: {} ({:?})", p.title, p.status);
            let outputs = Outputs::new(&list.dir(&id));
            for r in outputs.requests().map_err(err)? {
                println!(
                    "{}\t{}\t{:?}\trequested {} by {}\t{}",
                    r.id,
                    r.result,
                    r.status,
                    r.requested_at,
                    r.requested_by,
                    match (&r.decided_at, &r.reviewer) {
                        (Some(at), Some(by)) => format!("decided {at} by {by}"),
                        _ => String::new(),
                    }
                );
            }
        }
    }
    Ok(())
}

pub fn release(engine: &Engine, project: &str, command: ReleaseCmd) -> Result<(), String> {
    let list = engine.projects();
    let err = |e: tsunagu_engine::EngineError| e.to_string();
    list.load(project).map_err(err)?;
    let outputs = Outputs::new(&list.dir(project));
    match command {
        ReleaseCmd::List => {
            for r in outputs.requests().map_err(err)? {
                println!("{}\t{}\t{:?}\t{}", r.id, r.result, r.status, r.requested_by);
            }
        }
        ReleaseCmd::Show { request } => {
            let r = outputs.request(&request).map_err(err)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
            );
        }
        ReleaseCmd::Approve { request } => {
            let r = engine
                .project_admin()
                .approve_release(project, &request, &steward())
                .map_err(err)?;
            let sha = r.sha256.clone().unwrap_or_default();
            audit(
                engine,
                &format!("RELEASE APPROVE {project} {request} sha256={sha}"),
            )?;
            println!(
                "released {} to {}",
                r.result,
                outputs.outbox().join(&request).display()
            );
        }
        ReleaseCmd::Reject { request, reason } => {
            engine
                .project_admin()
                .reject_release(project, &request, &steward(), &reason)
                .map_err(err)?;
            audit(engine, &format!("RELEASE REJECT {project} {request}"))?;
            println!("rejected {request}");
        }
    }
    Ok(())
}
