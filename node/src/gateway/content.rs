//! How a download is presented: its Content-Type (from the file name the
//! request gives, as Tahoe does) and its Content-Disposition.
//!
//! A download is never active content on the gateway's origin: only types a
//! browser shows without running anything (plain text, raster images, audio,
//! video) may be shown inline; everything else, HTML and SVG included, and
//! anything without a name, is sent as `attachment`, so the browser saves it
//! instead of rendering it (and the download's Content-Security-Policy
//! sandboxes it should it be shown anyway). `save=true` asks for
//! `attachment` whatever the type. The file name goes into the header as a
//! plain ASCII `filename` (anything else replaced by `_`, so no quote or line
//! break can reach the header) and, when it is not plain ASCII, as an
//! RFC 5987 `filename*` too; Tahoe copies the URL's bytes as they are.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Content-Type of a download without a name.
pub const UNNAMED: &str = "application/octet-stream";

/// The headers that present one download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presentation {
    /// Content-Type.
    pub content_type: String,
    /// Content-Disposition, if any.
    pub disposition: Option<String>,
}

/// Types shown inline: nothing in them can run.
fn is_passive(mime: &str) -> bool {
    matches!(
        mime,
        "text/plain"
            | "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "image/avif"
            | "image/bmp"
    ) || mime.starts_with("audio/")
        || mime.starts_with("video/")
}

/// Characters kept as they are in `filename*` (RFC 5987 attr-char).
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `name` as a quoted-string's content: printable ASCII but `"` and `\`.
fn ascii_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Present a download named `name` (if the request gave one); `save` asks
/// for an attachment.
pub fn present(name: Option<&str>, save: bool) -> Presentation {
    let name = name.filter(|n| !n.is_empty());
    let content_type = name
        .and_then(|n| mime_guess::from_path(n).first_raw())
        .unwrap_or(UNNAMED)
        .to_string();
    let inline = !save && name.is_some() && is_passive(&content_type);
    let kind = if inline { "inline" } else { "attachment" };
    let disposition = match name {
        None => Some(kind.to_string()),
        Some(n) => {
            let mut d = format!("{kind}; filename=\"{}\"", ascii_name(n));
            if !n.is_ascii() || ascii_name(n) != n {
                d.push_str("; filename*=UTF-8''");
                d.extend(utf8_percent_encode(n, ATTR));
            }
            Some(d)
        }
    };
    Presentation {
        content_type,
        disposition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passive_types_are_shown_inline() {
        let p = present(Some("a.txt"), false);
        assert_eq!(p.content_type, "text/plain");
        assert_eq!(p.disposition.as_deref(), Some("inline; filename=\"a.txt\""));
        assert!(present(Some("p.png"), false)
            .disposition
            .unwrap()
            .starts_with("inline"));
        for active in [
            "x.html", "x.htm", "x.svg", "x.xml", "x.js", "x.pdf", "x.xhtml", "x",
        ] {
            let p = present(Some(active), false);
            assert!(
                p.disposition.as_deref().unwrap().starts_with("attachment"),
                "{active}: {p:?}"
            );
        }
        assert_eq!(present(Some("x.html"), false).content_type, "text/html");
        let p = present(None, false);
        assert_eq!(p.content_type, UNNAMED);
        assert_eq!(p.disposition.as_deref(), Some("attachment"));
        assert!(present(Some("a.txt"), true)
            .disposition
            .unwrap()
            .starts_with("attachment; filename=\"a.txt\""));
    }

    #[test]
    fn names_cannot_break_the_header() {
        let p = present(Some("a\"b\r\nSet-Cookie: x=1.txt"), true);
        let d = p.disposition.unwrap();
        assert!(!d.contains('\r') && !d.contains('\n'), "{d}");
        assert!(
            d.starts_with("attachment; filename=\"a_b__Set-Cookie: x=1.txt\""),
            "{d}"
        );
        assert!(axum::http::HeaderValue::from_str(&d).is_ok());
        let p = present(Some("fiancée.txt"), true);
        assert_eq!(
            p.disposition.as_deref(),
            Some("attachment; filename=\"fianc_e.txt\"; filename*=UTF-8''fianc%C3%A9e.txt")
        );
    }
}
