//! Markdown written by users (discussion comments) rendered to HTML that is safe to embed:
//! CommonMark with tables and strikethrough, raw HTML shown as text, and links or images only
//! with http(s), mailto or relative targets.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};

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

#[cfg(test)]
mod tests {
    use super::render;

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
