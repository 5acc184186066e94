//! The code in a reply: its fenced blocks (```python, ```py, ```js, ```javascript, ```node…;
//! an untagged block is in the call's language), in order. Blocks in other languages (```bash,
//! ```json, ```text…) are not run, and are named so the trace can say so.

use tracebox_model::Language;

/// A block of code to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeBlock {
    pub language: Language,
    pub code: String,
    /// Its closing fence came (a reply cut by `max_tokens` may end inside a block).
    pub closed: bool,
}

/// The fenced blocks of `text`: those to run, and the tags of those left alone.
pub fn code_blocks(text: &str, untagged: Language) -> (Vec<CodeBlock>, Vec<String>) {
    let mut runnable = Vec::new();
    let mut skipped = Vec::new();
    let mut lines = text.split_inclusive('\n');
    while let Some(line) = lines.next() {
        let Some((fence, indent, info)) = opening(line) else { continue };
        let mut code = String::new();
        let mut closed = false;
        for inner in lines.by_ref() {
            if closes(inner, &fence) {
                closed = true;
                break;
            }
            code.push_str(strip_indent(inner, indent));
        }
        let tag = info.split_whitespace().next().unwrap_or_default().to_owned();
        let language = if tag.is_empty() { Some(untagged) } else { tag.parse::<Language>().ok() };
        match language {
            Some(language) => runnable.push(CodeBlock { language, code, closed }),
            None => skipped.push(tag),
        }
    }
    (runnable, skipped)
}

/// A fence that opens a block: up to three spaces, then three or more backticks or tildes, then
/// the info string (a backtick fence's info may hold no backtick).
fn opening(line: &str) -> Option<(String, usize, &str)> {
    let trimmed = line.trim_end_matches(['\n', '\r']);
    let indent = trimmed.len() - trimmed.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &trimmed[indent..];
    let mark = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let length = rest.len() - rest.trim_start_matches(mark).len();
    if length < 3 {
        return None;
    }
    let info = rest[length..].trim();
    if mark == '`' && info.contains('`') {
        return None;
    }
    Some((rest[..length].to_owned(), indent, info))
}

/// A fence that closes a block opened by `fence`: the same character, at least as many, alone.
fn closes(line: &str, fence: &str) -> bool {
    let trimmed = line.trim_end_matches(['\n', '\r']).trim_end();
    let indent = trimmed.len() - trimmed.trim_start_matches(' ').len();
    let rest = &trimmed[indent..];
    let Some(mark) = fence.chars().next() else { return false };
    indent <= 3 && rest.len() >= fence.len() && rest.chars().all(|c| c == mark)
}

/// A line of a block with as much of the fence's indentation removed as it has.
fn strip_indent(line: &str, indent: usize) -> &str {
    let spaces = line.len() - line.trim_start_matches(' ').len();
    &line[spaces.min(indent)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_blocks_run_in_their_language_and_untagged_ones_in_the_calls() {
        let text = "Here:\n```python\nprint(1)\n```\nand\n```js\nconsole.log(2)\n```\n```\nx = 3\n```\n";
        let (blocks, skipped) = code_blocks(text, Language::Python);
        assert_eq!(
            blocks,
            [
                CodeBlock { language: Language::Python, code: "print(1)\n".into(), closed: true },
                CodeBlock { language: Language::Node, code: "console.log(2)\n".into(), closed: true },
                CodeBlock { language: Language::Python, code: "x = 3\n".into(), closed: true },
            ]
        );
        assert!(skipped.is_empty());
        assert_eq!(code_blocks("```\nlet a = 1\n```", Language::Node).0[0].language, Language::Node);
    }

    #[test]
    fn every_documented_tag_is_understood() {
        for (tag, language) in [
            ("python", Language::Python),
            ("py", Language::Python),
            ("js", Language::Node),
            ("javascript", Language::Node),
            ("node", Language::Node),
            ("Python {.numberLines}", Language::Python),
        ] {
            let (blocks, _) = code_blocks(&format!("```{tag}\n1\n```"), Language::Python);
            assert_eq!(blocks[0].language, language, "{tag}");
        }
    }

    #[test]
    fn blocks_in_other_languages_are_named_not_run() {
        let (blocks, skipped) = code_blocks("```bash\nrm -rf /\n```\n```json\n{}\n```\n", Language::Python);
        assert!(blocks.is_empty());
        assert_eq!(skipped, ["bash", "json"]);
    }

    #[test]
    fn longer_fences_tildes_and_indented_fences_follow_commonmark() {
        let text = "````python\nprint('```')\n````\n  ~~~py\n  if x:\n      y()\n  ~~~\n";
        let (blocks, _) = code_blocks(text, Language::Python);
        assert_eq!(blocks[0].code, "print('```')\n");
        assert_eq!(blocks[1].code, "if x:\n    y()\n");
    }

    #[test]
    fn an_unclosed_block_runs_to_the_end_and_text_without_fences_has_none() {
        let (blocks, _) = code_blocks("```python\nprint(1)\n", Language::Python);
        assert_eq!((blocks[0].code.as_str(), blocks[0].closed), ("print(1)\n", false));
        assert!(code_blocks("no code here, only `inline` ticks", Language::Python).0.is_empty());
    }
}
