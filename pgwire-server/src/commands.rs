//! Statements a Postgres client sends that concern the session, not the
//! data: transactions, `SET`, `SHOW`, `DISCARD`. Answered by the server.

use std::collections::BTreeMap;
use std::sync::Mutex;

use datafusion::sql::sqlparser::ast::{self, Set};
use tsunagu_engine::Statement;

/// A session statement and what it asks.
#[derive(Debug, Clone)]
pub enum Command {
    Begin,
    Commit,
    Rollback,
    /// `SET name = value` of a Postgres setting (not a DataFusion one).
    Set {
        name: String,
        value: String,
    },
    /// `SHOW name` of a Postgres setting.
    Show {
        name: String,
    },
    /// `SET ROLE name` / `SET ROLE NONE` / `RESET ROLE` (`None`: back to the login role).
    SetRole(Option<String>),
    /// Accepted and ignored, answered with this tag.
    Ack(&'static str),
}

impl Command {
    /// The statement as the audit log records it.
    pub fn text(&self) -> String {
        match self {
            Command::Begin => "BEGIN".into(),
            Command::Commit => "COMMIT".into(),
            Command::Rollback => "ROLLBACK".into(),
            Command::Set { name, value } => format!("SET {name} = '{value}'"),
            Command::Show { name } => format!("SHOW {name}"),
            Command::SetRole(Some(r)) => format!("SET ROLE {r}"),
            Command::SetRole(None) => "RESET ROLE".into(),
            Command::Ack(tag) => tag.to_string(),
        }
    }
}

/// Recognizes a session statement; `None` means "plan it with DataFusion".
pub fn classify(statement: &Statement) -> Option<Command> {
    let Statement::Sql(datafusion::sql::parser::Statement::Statement(s)) = statement else {
        return None;
    };
    Some(match s.as_ref() {
        ast::Statement::StartTransaction { .. } => Command::Begin,
        ast::Statement::Commit { .. } => Command::Commit,
        ast::Statement::Rollback { .. } => Command::Rollback,
        ast::Statement::Discard { .. } => Command::Ack("DISCARD ALL"),
        ast::Statement::Savepoint { .. } => Command::Ack("SAVEPOINT"),
        ast::Statement::ReleaseSavepoint { .. } => Command::Ack("RELEASE"),
        ast::Statement::Deallocate { .. } => Command::Ack("DEALLOCATE"),
        ast::Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let name = variable.to_string().to_ascii_lowercase();
            if name.starts_with("datafusion.") {
                return None;
            }
            let value = values
                .iter()
                .map(|v| match v {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                            s.clone()
                        }
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            Command::Set { name, value }
        }
        ast::Statement::Set(Set::SetTimeZone { value, .. }) => Command::Set {
            name: "timezone".into(),
            value: value.to_string().trim_matches('\'').to_owned(),
        },
        ast::Statement::Set(Set::SetRole { role_name, .. }) => {
            Command::SetRole(role_name.as_ref().map(|r| r.value.to_ascii_lowercase()))
        }
        ast::Statement::Set(_) => Command::Ack("SET"),
        ast::Statement::Reset(r) => match &r.reset {
            ast::Reset::ConfigurationParameter(name)
                if name.to_string().eq_ignore_ascii_case("role") =>
            {
                Command::SetRole(None)
            }
            ast::Reset::ConfigurationParameter(name)
                if name
                    .to_string()
                    .to_ascii_lowercase()
                    .starts_with("datafusion.") =>
            {
                return None;
            }
            _ => Command::Ack("RESET"),
        },
        ast::Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            if name.starts_with("datafusion.")
                || name == "all"
                || name == "tables"
                || name == "columns"
            {
                return None;
            }
            Command::Show { name }
        }
        _ => return None,
    })
}

/// Postgres settings of one connection, with the values clients expect.
#[derive(Debug)]
pub struct Settings {
    values: Mutex<BTreeMap<String, String>>,
}

/// The server version reported to clients.
pub const SERVER_VERSION: &str = "16.6";

impl Settings {
    /// Defaults, overridden by the startup parameters a client sent.
    pub fn new(startup: impl IntoIterator<Item = (String, String)>) -> Settings {
        let mut values: BTreeMap<String, String> = [
            ("server_version", SERVER_VERSION),
            ("server_version_num", "160006"),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("datestyle", "ISO, MDY"),
            ("timezone", "UTC"),
            ("intervalstyle", "postgres"),
            ("search_path", "public"),
            ("standard_conforming_strings", "on"),
            ("integer_datetimes", "on"),
            ("transaction_isolation", "read committed"),
            ("transaction_read_only", "on"),
            ("default_transaction_read_only", "on"),
            ("max_identifier_length", "63"),
            ("is_superuser", "off"),
            ("application_name", ""),
            ("extra_float_digits", "1"),
            ("lc_messages", "C"),
            ("lc_collate", "C"),
            ("lc_ctype", "C"),
            ("statement_timeout", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in startup {
            let k = k.to_ascii_lowercase();
            if values.contains_key(&k) && k != "server_version" {
                values.insert(k, v);
            }
        }
        Settings {
            values: Mutex::new(values),
        }
    }

    /// Sets a value.
    pub fn set(&self, name: &str, value: &str) {
        let mut v = self.values.lock().unwrap_or_else(|p| p.into_inner());
        v.insert(name.to_owned(), value.to_owned());
    }

    /// Every setting and its value.
    pub fn all(&self) -> Vec<(String, String)> {
        let v = self.values.lock().unwrap_or_else(|p| p.into_inner());
        v.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Reads a value; `None` for an unknown setting.
    pub fn get(&self, name: &str) -> Option<String> {
        let v = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let key = match name {
            "time zone" => "timezone",
            "transaction isolation level" => "transaction_isolation",
            other => other,
        };
        v.get(key).cloned()
    }
}
