//! The documentation agrees with itself: every relative link in README.md and docs/*.md points at
//! a file that exists (and at a heading that exists, for `#anchor` links), and every metrics
//! address the docs show uses the port of `config/example.toml`.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::support::repo_root;

/// README.md and every docs/*.md, sorted.
fn doc_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// Targets of the inline links `[text](target)` on one line.
fn link_targets(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        out.push(after[..end].trim());
        rest = &after[end..];
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a Markdown file offers (duplicates get GitHub's `-1`, `-2` suffixes).
fn anchors(text: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for (_, line) in prose_lines(text) {
        let Some(h) = line.strip_prefix('#') else {
            continue;
        };
        let base = slug(h.trim_start_matches('#'));
        let mut s = base.clone();
        let mut n = 0;
        while out.contains(&s) {
            n += 1;
            s = format!("{base}-{n}");
        }
        out.insert(s);
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        let text = read(&file);
        let dir = file.parent().expect("a file has a directory");
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target, None),
                };
                let dest = if path.is_empty() {
                    file.clone()
                } else {
                    dir.join(path)
                };
                let at = format!("{}:{n}: ({target})", file.display());
                if !dest.exists() {
                    broken.push(format!("{at}: {} does not exist", dest.display()));
                    continue;
                }
                if let Some(a) = anchor {
                    if dest.extension().is_some_and(|x| x == "md")
                        && !anchors(&read(&dest)).contains(a)
                    {
                        broken.push(format!("{at}: no heading #{a} in {}", dest.display()));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken links in the docs:\n{}",
        broken.join("\n")
    );
    assert!(checked > 0, "no relative link found: is the parser right?");
}

/// README's "Where to look next" is the way into docs/: a page it does not link is lost.
/// (`notes-*.md` are a helper's working notes, not pages.)
#[test]
fn readme_links_every_page_in_docs() {
    let readme = read(&repo_root().join("README.md"));
    let linked: HashSet<&str> = prose_lines(&readme)
        .into_iter()
        .flat_map(|(_, l)| link_targets(l))
        .map(|t| t.split('#').next().unwrap_or(t))
        .collect();
    let missing: Vec<String> = doc_files()
        .into_iter()
        .skip(1)
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let rel = format!("docs/{name}");
            (!name.starts_with("notes-") && !linked.contains(rel.as_str())).then_some(rel)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "README.md links no page for: {} (add them under \"Where to look next\")",
        missing.join(", ")
    );
}

/// The port of `[metrics] listen` in config/example.toml.
fn example_metrics_port() -> String {
    let text = read(&repo_root().join("config/example.toml"));
    let doc: toml::Table = text.parse().expect("config/example.toml is TOML");
    let listen = doc["metrics"]["listen"]
        .as_str()
        .expect("config/example.toml sets [metrics] listen");
    listen
        .rsplit_once(':')
        .expect("listen is ADDR:PORT")
        .1
        .to_string()
}

/// `host:port` addresses on a line (127.0.0.1:9477, [::1]:9477, 0.0.0.0:9477).
fn ports(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for host in ["127.0.0.1:", "0.0.0.0:", "[::1]:", "localhost:"] {
        let mut rest = line;
        while let Some(i) = rest.find(host) {
            let after = &rest[i + host.len()..];
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                out.push(digits);
            }
            rest = after;
        }
    }
    out
}

#[test]
fn the_docs_show_the_metrics_port_of_the_example_config() {
    let want = example_metrics_port();
    let root = repo_root();
    let mut files = doc_files();
    for entry in std::fs::read_dir(root.join("config")).expect("read config/") {
        let p = entry.expect("config/ entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            files.push(p);
        }
    }
    let mut wrong = Vec::new();
    let mut seen = 0;
    for file in files {
        let text = read(&file);
        for (i, line) in text.lines().enumerate() {
            if !line.contains("metrics") && !line.contains("listen =") {
                continue;
            }
            for port in ports(line) {
                seen += 1;
                if port != want {
                    wrong.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "config/example.toml's metrics port is {want}, but these lines say otherwise:\n{}",
        wrong.join("\n")
    );
    assert!(seen >= 2, "the docs show no metrics address at all");
}
