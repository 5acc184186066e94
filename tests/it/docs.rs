//! The Markdown documentation's relative links resolve: each names a file of the repository and,
//! when it points into a Markdown file (`docs/api.md#errors`), a heading of that file, as GitHub
//! makes anchors of headings. The reference lives in several files, so a section that moves
//! breaks links elsewhere; this finds them. No server, no Docker.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use regex::Regex;

/// The front page, the architecture map, and every file of docs/.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    files.extend(docs);
    files
}

/// The lines outside fenced code blocks, with inline code blanked: links in code are examples.
fn prose(text: &str) -> Vec<String> {
    let code = Regex::new("`[^`]*`").unwrap();
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push(code.replace_all(line, "`code`").into_owned());
        }
    }
    lines
}

/// The anchors GitHub gives a file's headings: the text as rendered, lowercased, without
/// punctuation but `-` and `_`, spaces turned to `-`; a repeated one gets `-1`, `-2`…
fn anchors(text: &str) -> HashSet<String> {
    let heading = Regex::new(r"^#{1,6}\s+(.*?)\s*$").unwrap();
    let link = Regex::new(r"\[([^\]]*)\]\([^)]*\)").unwrap();
    let mut fenced = false;
    let mut found = HashSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(captures) = heading.captures(line).filter(|_| !fenced) else { continue };
        let rendered = link.replace_all(&captures[1], "$1");
        let slug: String = rendered
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !found.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    found
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let link = Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in markdown_files(root) {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(root).unwrap().display().to_string();
        for line in prose(&text) {
            for captures in link.captures_iter(&line) {
                let target = &captures[1];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
                let dest = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
                if !dest.exists() {
                    broken.push(format!("{name}: {target}: no such file"));
                } else if !anchor.is_empty()
                    && dest.extension().is_some_and(|ext| ext == "md")
                    && !anchors(&std::fs::read_to_string(&dest).unwrap()).contains(anchor)
                {
                    broken.push(format!("{name}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links in the docs:\n{}", broken.join("\n"));
    assert!(checked > 20, "only {checked} relative links found: is the link pattern still right?");
}
