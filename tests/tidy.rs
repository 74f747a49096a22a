//! Code hygiene checked inside `cargo test`: every source file opens with a `//!` doc saying
//! what it owns, no test is ignored or expected to panic, and the core names no dialect.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn tidy_every_source_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")), &mut files);
    assert!(files.len() > 20, "found the sources");
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().trim_start().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "files without a leading //! doc: {missing:?}");
}

#[test]
fn tidy_no_ignored_or_should_panic_tests() {
    let mut files = Vec::new();
    for dir in ["src", "tests"] {
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
    }
    let needles = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for needle in needles {
            assert!(!text.contains(needle), "{} contains {needle}", file.display());
        }
    }
}

/// The code of `text` with comments, string and char literals blanked out.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// The words of an identifier: split at `_` and at lower→upper case changes, lowercased.
fn words(identifier: &str) -> Vec<String> {
    let mut words = Vec::new();
    for part in identifier.split('_') {
        let mut word = String::new();
        let mut previous_lower = false;
        for c in part.chars() {
            if c.is_uppercase() && previous_lower {
                words.push(std::mem::take(&mut word));
            }
            previous_lower = c.is_lowercase() || c.is_ascii_digit();
            word.extend(c.to_lowercase());
        }
        words.push(word);
    }
    words
}

#[test]
fn tidy_the_core_names_no_dialect() {
    let dialects = ["big", "osu", "rechat", "virola"];
    let mut offences = Vec::new();
    for dir in ["net", "shard", "fanout", "mesh", "rest", "http", "ws"] {
        let mut files = Vec::new();
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir), &mut files);
        assert!(!files.is_empty(), "src/{dir} has sources");
        for file in files {
            let code = code_only(&std::fs::read_to_string(&file).unwrap_or_default());
            for (line, text) in code.lines().enumerate() {
                let identifiers = text.split(|c: char| !(c.is_alphanumeric() || c == '_'));
                for identifier in identifiers.filter(|i| !i.is_empty()) {
                    // A dialect's name as an identifier, a path segment or a name's first word
                    // (`CLOSE_TOO_BIG` says "big" as English, not as the dialect).
                    let first = words(identifier).into_iter().next().unwrap_or_default();
                    if dialects.contains(&first.as_str()) {
                        offences.push(format!("{}:{}: {identifier}", file.display(), line + 1));
                    }
                }
            }
        }
    }
    assert!(offences.is_empty(), "dialect names in the core:\n{}", offences.join("\n"));
}

#[test]
fn tidy_dialect_word_splitting_finds_what_it_must() {
    assert_eq!(words("BigState"), ["big", "state"]);
    assert_eq!(words("osu_only"), ["osu", "only"]);
    assert_eq!(words("bigger"), ["bigger"]);
    assert_eq!(code_only("let a = \"osu\"; // big\nx"), "let a =  ; \nx");
}
