//! Syntax highlighting of text files for the web pages, on the server (the hub may be
//! air-gapped: no script or stylesheet from elsewhere), through `syntect` and the Sublime
//! grammars it bundles. Output is HTML per line: text escaped by syntect, spans carrying
//! `hl-`-prefixed classes of the grammar's scopes (`hl-comment`, `hl-string`,
//! `hl-keyword`…), coloured by the stylesheet for light and dark mode. Each line is closed
//! on itself (the spans open at its start are reopened), so a table row per line stays
//! well-formed across multi-line strings and comments.
//!
//! Budget: a file over [`MAX_BYTES`], or with a line over [`MAX_LINE_BYTES`] (minified
//! JSON, generated code), is shown plain, as is a language the grammars do not know.

use std::fmt::Write;
use std::sync::OnceLock;
use syntect::html::{ClassStyle, line_tokens_to_classed_spans};
use syntect::parsing::{ParseState, Scope, ScopeStack, SyntaxReference, SyntaxSet};

/// Largest file highlighted.
pub const MAX_BYTES: usize = 128 << 10;
/// Longest line of a highlighted file.
pub const MAX_LINE_BYTES: usize = 2_000;
const PREFIX: &str = "hl-";
const STYLE: ClassStyle = ClassStyle::SpacedPrefixed { prefix: PREFIX };

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// The grammar for a file name (by extension, then by whole name such as `Makefile`), or a
/// language name as written after a code fence (`python`, `rust`, `yml`…).
fn syntax_for(name: &str) -> Option<&'static SyntaxReference> {
    let set = syntaxes();
    let base = name.rsplit('/').next().unwrap_or(name);
    let ext = base.rsplit_once('.').map_or(base, |(_, ext)| ext);
    let alias = match ext.to_ascii_lowercase().as_str() {
        "jsonl" | "ndjson" | "ipynb" => "json".to_owned(),
        "yml" => "yaml".to_owned(),
        "cu" | "cuh" => "cpp".to_owned(),
        other => other.to_owned(),
    };
    set.find_syntax_by_extension(&alias)
        .or_else(|| set.find_syntax_by_extension(base))
        .or_else(|| set.find_syntax_by_token(&alias))
        .filter(|s| s.name != "Plain Text")
}

/// The classes of one scope (`keyword.control.python` → `hl-keyword hl-control hl-python`).
fn classes(scope: Scope) -> String {
    scope
        .build_string()
        .split('.')
        .map(|atom| format!("{PREFIX}{atom}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` as highlighted HTML, one string per line (as `str::lines` splits it); `None` when
/// the file is over budget or its language unknown, so the caller shows it plain.
pub fn lines(file_name: &str, text: &str) -> Option<Vec<String>> {
    if text.len() > MAX_BYTES || text.lines().any(|l| l.len() > MAX_LINE_BYTES) {
        return None;
    }
    let syntax = syntax_for(file_name)?;
    let set = syntaxes();
    let mut state = ParseState::new(syntax);
    let mut stack = ScopeStack::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let at_start = stack.clone();
        // The grammars expect each line with its newline.
        let with_newline = format!("{line}\n");
        let ops = state.parse_line(&with_newline, set).ok()?;
        let (html, delta) =
            line_tokens_to_classed_spans(&with_newline, &ops, STYLE, &mut stack).ok()?;
        let mut row = String::with_capacity(html.len() + 64);
        for scope in at_start.as_slice() {
            let _ = write!(row, "<span class=\"{}\">", classes(*scope));
        }
        // The only newline is the one added above (escaped text holds none of its own).
        row.push_str(&html.replace('\n', ""));
        let open = at_start.len() as isize + delta;
        for _ in 0..open.max(0) {
            row.push_str("</span>");
        }
        out.push(row);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(name: &str, text: &str) -> String {
        lines(name, text).expect("highlighted").join("\n")
    }

    /// Spans balance on every line: each row is well-formed on its own.
    fn balanced(rows: &[String]) {
        for row in rows {
            assert_eq!(
                row.matches("<span").count(),
                row.matches("</span>").count(),
                "{row}"
            );
        }
    }

    #[test]
    fn python_keywords_strings_and_comments() {
        let text = "def train(x):\n    s = \"\"\"first # not a comment\n    still string\"\"\"\n    return 42  # done\n";
        let rows = lines("src/train.py", text).expect("python");
        assert_eq!(rows.len(), 4);
        balanced(&rows);
        assert!(
            rows[0].contains("hl-storage") && rows[0].contains(">def<"),
            "{}",
            rows[0]
        );
        // The string's second line is still a string, not code.
        assert!(rows[2].contains("hl-string"), "{}", rows[2]);
        // A docstring is documentation, across its lines too.
        let doc = lines("d.py", "def f():\n    \"\"\"One\n    two\"\"\"\n").expect("python");
        assert!(doc[2].contains("hl-documentation"), "{}", doc[2]);
        assert!(
            !rows[1].contains("hl-comment"),
            "a # inside a string: {}",
            rows[1]
        );
        assert!(
            rows[3].contains("hl-comment") && rows[3].contains(" done</span>"),
            "{}",
            rows[3]
        );
        assert!(rows.iter().all(|r| !r.contains('\n')));
        assert!(rows[3].contains("hl-numeric"), "{}", rows[3]);
    }

    #[test]
    fn json_yaml_and_rust() {
        let json = joined("config.json", "{\"hidden_size\": 8, \"ok\": true}\n");
        assert!(
            json.contains("hl-string")
                && json.contains("hl-numeric")
                && json.contains("hl-constant")
        );
        assert!(
            lines("data.jsonl", "{\"a\": 1}\n").is_some(),
            "JSON Lines as JSON"
        );
        let yaml = joined("card.yml", "license: mit  # a comment\ntags: [a, 'b']\n");
        assert!(
            yaml.contains("hl-entity") && yaml.contains("hl-comment") && yaml.contains("hl-string")
        );
        let rust = lines(
            "lib.rs",
            "/* a\n   block */\nfn f<'a>(x: &'a str) -> u8 { 7 }\n",
        )
        .expect("rust");
        balanced(&rust);
        assert!(
            rust[1].contains("hl-comment"),
            "the block comment's second line: {}",
            rust[1]
        );
        assert!(
            rust[2].contains("hl-storage") && rust[2].contains("hl-numeric"),
            "{}",
            rust[2]
        );
        assert!(
            !rust[2].contains("hl-string"),
            "a lifetime is no string: {}",
            rust[2]
        );
    }

    #[test]
    fn html_in_code_is_escaped() {
        let text = "x = \"<script>alert(1)</script>\"\n# <img src=x onerror=alert(1)>\n";
        let html = joined("evil.py", text);
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;") && html.contains("&lt;img"),
            "{html}"
        );
        let json = joined("evil.json", "{\"</span><b>x</b>\": 1}\n");
        assert!(
            !json.contains("<b>") && json.contains("&lt;/span&gt;"),
            "{json}"
        );
    }

    #[test]
    fn over_budget_or_unknown_is_plain() {
        assert!(lines("notes.unknownext", "hello\n").is_none());
        assert!(lines("big.py", &"x = 1\n".repeat(MAX_BYTES / 6 + 1)).is_none());
        assert!(lines("min.json", &format!("[{}1]\n", "1,".repeat(MAX_LINE_BYTES))).is_none());
        assert!(lines("empty.py", "").is_some_and(|rows| rows.is_empty()));
    }
}
