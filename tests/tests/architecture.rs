//! `docs/ARCHITECTURE.md` stays true: every path it names exists, no room
//! outside a backend's folder asks which database runs, the runtime's
//! modules import each other in one direction, `Store` is not part of the
//! runtime's public API, and the CLI and the console never reach below the
//! engine.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &str) -> Vec<(String, String)> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let base = root().join(dir);
    let mut files = Vec::new();
    walk(&base, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(root()).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// The code of a file without its comments (`//` to the end of a line).
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The folders at the repository's top a path in the map may start with.
const TOP: &[&str] = &[
    "hydra-cli",
    "hydra-console",
    "hydra-runtime",
    "hydra-macros",
    "hydra-store",
    "migrations",
    "examples",
    "tests",
    "peer",
    "docs",
    "scripts",
];

#[test]
fn every_path_the_architecture_names_exists() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let mut named = 0;
    for (i, part) in doc.split('`').enumerate() {
        // Odd parts are inside backticks; a path starts at a folder of the
        // repository's top (a name inside a table row is relative to it).
        let top = part.split('/').next().unwrap_or("");
        let looks_like_a_path = i % 2 == 1 && part.contains('/') && !part.contains(' ') && !top.is_empty();
        if !looks_like_a_path || part.contains('<') || !TOP.contains(&top) {
            continue;
        }
        named += 1;
        assert!(root().join(part).exists(), "docs/ARCHITECTURE.md names `{part}`, which does not exist");
    }
    assert!(named > 50, "the map names {named} paths: the check found too few to be reading it right");
}

#[test]
fn no_room_outside_a_backends_folder_asks_which_database_runs() {
    let branches =
        ["DbBackend::", "Backend::Sqlite", "Backend::Postgres", "match self.backend", "is_postgres(", "is_sqlite("];
    for dir in ["hydra-store/src", "hydra-runtime/src", "hydra-console/src", "hydra-cli/src", "hydra-macros/src"] {
        for (file, text) in sources(dir) {
            if file.starts_with("hydra-store/src/backend/") {
                continue;
            }
            for b in branches {
                assert!(
                    !code(&text).contains(b),
                    "{file} asks which database runs (`{b}`): that belongs in a backend's folder"
                );
            }
        }
    }
    // The schema's history asks its own dialect, and only there.
    for (file, text) in sources("migrations/src") {
        if file.ends_with("dialect.rs") {
            continue;
        }
        assert!(!code(&text).contains("DbBackend"), "{file} names a database: ask `dialect.rs`");
    }
}

/// The runtime's top-level modules a file refers to through `crate::`,
/// in every form: `crate::worker::…`, `crate::{worker, cron::…}` (nested
/// groups too), and the names `lib.rs` re-exports from a module
/// (`crate::Worker` is `worker`).
fn crate_modules_used(text: &str) -> std::collections::BTreeSet<String> {
    const REEXPORTED: [(&str, &str); 5] = [
        ("Worker", "worker"),
        ("WorkerBuilder", "worker"),
        ("CronSchedule", "cron"),
        ("MissedTicks", "cron"),
        ("SKIP_GRACE_MS", "cron"),
    ];
    let mut used = std::collections::BTreeSet::new();
    let mut note = |name: &str| {
        let name = name.trim();
        let module = REEXPORTED.iter().find(|(n, _)| *n == name).map_or(name, |(_, m)| m);
        if !module.is_empty() {
            used.insert(module.to_owned());
        }
    };
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The first segment of each item of the group, at depth 0.
            let mut depth = 0usize;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && depth == 0 && !c.is_whitespace() => {
                        note(&ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            note(&ident(rest));
        }
    }
    // A module reached by climbing out of a folder.
    for (i, _) in text.match_indices("super::super::") {
        note(&ident(&text[i + "super::super::".len()..]));
    }
    used
}

#[test]
fn the_import_check_sees_every_form_of_a_crate_path() {
    let used = crate_modules_used(
        "use crate::{engine::Engine, worker::{self, x}, clock};\nlet w = crate::Worker::builder;\n\
         use crate::cron::Thing; use super::super::commit::X;",
    );
    let used: Vec<_> = used.iter().map(String::as_str).collect();
    assert_eq!(used, ["clock", "commit", "cron", "engine", "worker"]);
}

#[test]
fn the_runtimes_modules_import_each_other_in_one_direction() {
    // Who may not import whom (see "Who may import whom").
    let rules: [(&str, &[&str]); 4] = [
        ("hydra-runtime/src/engine/", &["worker", "cron"]),
        ("hydra-runtime/src/runs/", &["engine", "worker", "cron", "context", "commit"]),
        ("hydra-runtime/src/new_run.rs", &["engine", "worker", "cron", "context", "commit"]),
        ("hydra-runtime/src/cron.rs", &["worker"]),
    ];
    let all = sources("hydra-runtime/src");
    for (prefix, forbidden) in rules {
        let files: Vec<_> = all.iter().filter(|(f, _)| f.starts_with(prefix)).collect();
        assert!(!files.is_empty(), "no file under {prefix}");
        for (file, text) in files {
            let used = crate_modules_used(&code(text));
            for f in forbidden {
                assert!(!used.contains(*f), "{file} uses `crate::{f}`: the engine is the hub, not a caller of it");
            }
        }
    }
}

#[test]
fn the_store_is_not_part_of_the_runtimes_public_api() {
    let lib = code(&std::fs::read_to_string(root().join("hydra-runtime/src/lib.rs")).unwrap());
    for line in lib.lines().filter(|l| l.contains("pub use hydra_store")) {
        assert!(!line.contains("Store,") && !line.contains("Store}"), "lib.rs re-exports the store: {line}");
    }
    let reexports = lib.split("pub use hydra_store::{").nth(1).unwrap().split('}').next().unwrap();
    assert!(!reexports.split(',').any(|n| n.trim() == "Store"), "lib.rs re-exports `Store`");
    for (file, text) in sources("hydra-runtime/src/engine") {
        assert!(!code(&text).contains("pub fn store("), "{file} hands out the store");
    }
}

#[test]
fn the_cli_and_the_console_read_through_the_engine_only() {
    for dir in ["hydra-cli/src", "hydra-console/src"] {
        for (file, text) in sources(dir) {
            let text = code(&text);
            assert!(!text.contains("hydra_store"), "{file} reaches into the store");
            assert!(!text.contains("unstable"), "{file} reaches below the engine");
        }
    }
}
