//! Shared fixtures: the stores under test, a state folder, the binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tsunagu_engine::{Engine, EngineOptions};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The Eunomia GiBleed store shipped with the tests.
pub fn eunomia() -> PathBuf {
    repo().join("tests/data/eunomia")
}

/// The folder of this test run's stores and state folders,
/// `tsunagu-tests-<pid>` in the temporary directory. Folders that runs no
/// longer alive left behind are removed when the first test asks for it.
pub fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("tsunagu-tests-") else {
                    continue;
                };
                let alive = pid
                    .parse::<u32>()
                    .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
                if !alive {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = tmp.join(format!("tsunagu-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test run folder");
        dir
    })
}

/// A new folder inside this run's folder.
pub fn temp_folder(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(run_dir())
        .expect("tempdir")
        .keep()
}

/// A small synthetic store, generated once per test run.
pub fn synthetic() -> &'static Path {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = temp_folder("tsunagu-synthetic-");
        let opts = tsunagu_generator::GenerateOptions {
            persons: 2000,
            seed: 7,
            threads: 2,
            renumber: None,
            codes: tsunagu_generator::Codes::Standard,
        };
        tsunagu_generator::generate(&opts, &dir, &|_, _| {}).expect("generate");
        dir
    })
}

/// A fresh, empty state folder that lives for the test run.
pub fn state_dir() -> PathBuf {
    temp_folder("tsunagu-state-")
}

/// Opens a store with a fresh state folder.
pub async fn open(store: &Path) -> Engine {
    Engine::open(
        store,
        EngineOptions {
            state_dir: Some(state_dir()),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{} does not open: {e}", store.display()))
}

/// Runs SQL and renders the result as lines of `|`-separated values.
pub async fn query(engine: &Engine, sql: &str) -> Vec<String> {
    let batches = engine
        .session()
        .expect("session")
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    lines(&batches)
}

/// Record batches as lines of `|`-separated values.
pub fn lines(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| {
                datafusion::arrow::util::display::ArrayFormatter::try_new(
                    c.as_ref(),
                    &Default::default(),
                )
                .expect("formatter")
            })
            .collect();
        for row in 0..b.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out
}

/// Runs a client check script (`python3 x.py` / `node x.js`) with arguments;
/// it must exit 0 and print the expected summary line.
pub fn client_check(program: &str, script: &str, args: &[&str], summary: &str) {
    let out = Command::new(program)
        .arg(repo().join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(summary), "{stdout}");
}

/// Runs SQL returning one integer.
pub async fn count(engine: &Engine, sql: &str) -> i64 {
    let rows = query(engine, sql).await;
    assert_eq!(rows.len(), 1, "{sql} returned {rows:?}");
    rows[0]
        .parse()
        .unwrap_or_else(|_| panic!("{sql} returned {rows:?}"))
}

/// The `tsunagu` binary, built once per test run.
/// Runs `openssl` with `args` in `dir` (test certificates), failing the
/// test with its message if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn tsunagu() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Without the variables `cargo test` sets for this package: build
        // scripts that watch them (ring's, `CARGO_MANIFEST_DIR`) would see
        // them changed from a build in a shell, and everything above them
        // (rustls, object_store, DataFusion) would be compiled again.
        let mut build = Command::new(env!("CARGO"));
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_")
                || name.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "OUT_DIR",
                ]
                .contains(&name.as_ref())
            {
                build.env_remove(name.as_ref());
            }
        }
        let status = build
            .args(["build", "-q", "-p", "tsunagu-cli", "--bin", "tsunagu"])
            .current_dir(repo())
            .status()
            .expect("cargo build runs");
        assert!(status.success(), "building tsunagu failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target"));
        target.join("debug").join("tsunagu")
    })
    .clone()
}
