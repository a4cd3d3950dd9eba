//! The built-in demo store: generated once into a cache folder.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use tsunagu_generator::{GenerateOptions, generate};

/// Persons in the demo store.
pub const DEMO_PERSONS: u64 = 20_000;
/// Seed of the demo store.
pub const DEMO_SEED: u64 = 42;

/// The cache folder: `$TSUNAGU_CACHE_DIR`, else `$XDG_CACHE_HOME/tsunagu`, else `~/.cache/tsunagu`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TSUNAGU_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("tsunagu")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tsunagu")))
        .unwrap_or_else(|| std::env::temp_dir().join("tsunagu-cache"))
}

/// The demo store's folder, generating it first if needed.
pub fn demo_store() -> Result<PathBuf, String> {
    let dir = cache_dir().join(format!("demo-{DEMO_PERSONS}-seed{DEMO_SEED}"));
    if dir.join("rwd.toml").is_file() {
        return Ok(dir);
    }
    eprintln!(
        "tsunagu: generating the demo store ({DEMO_PERSONS} persons) into {}",
        dir.display()
    );
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let opts = GenerateOptions {
        persons: DEMO_PERSONS,
        seed: DEMO_SEED,
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        renumber: None,
        codes: tsunagu_generator::Codes::Standard,
    };
    let bar = progress_bar(DEMO_PERSONS);
    generate(&opts, &tmp, &|done, _| bar.set_position(done)).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        Err(_) if dir.join("rwd.toml").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// A progress bar over persons, drawn on stderr when it is a terminal.
pub fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} persons ({eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
