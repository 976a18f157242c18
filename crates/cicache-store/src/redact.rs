//! Text from a server (an error body, an error message) before it reaches a log: credentials
//! and tokens removed, and cut short.
//!
//! A server or a proxy in front of it may echo the request in its error page, headers
//! included: `Authorization: AWS4-HMAC-SHA256 Credential=..., Signature=...`,
//! `x-amz-security-token: ...`, a presigned URL's `X-Amz-Signature=...`. Whatever a server
//! says goes through [`server_text`] first.

/// Longest server text kept (in bytes, cut at a character boundary).
pub const MAX_SERVER_TEXT: usize = 300;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Names after which a secret follows; case-insensitive. `authorization` hides the rest of
/// its line (its value holds spaces); the others hide one token.
const MARKERS: &[(&str, bool)] = &[
    ("proxy-authorization", true),
    ("authorization", true),
    ("x-amz-security-token", false),
    ("x-amz-signature", false),
    ("x-amz-credential", false),
    ("signature", false),
    ("credential", false),
    ("aws_secret_access_key", false),
    ("aws_session_token", false),
    ("securitytoken", false),
    ("sessiontoken", false),
    ("password", false),
    ("token", false),
];

/// Server text for a message: secrets redacted, whitespace runs folded, cut to
/// [`MAX_SERVER_TEXT`] bytes.
pub fn server_text(text: &str) -> String {
    // Redacted before folding (an `Authorization` value ends with its line) and before
    // cutting (a cut could split a marker from its value).
    let scrubbed = scrub(text);
    let folded = scrubbed.split_whitespace().collect::<Vec<_>>().join(" ");
    cut(&folded, MAX_SERVER_TEXT)
}

/// [`redact`], and the values of credentials in the environment replaced wherever they
/// appear.
pub fn scrub(text: &str) -> String {
    let mut out = redact(text);
    for (name, value) in secret_env() {
        if value.len() >= 8 {
            out = out.replace(&value, &format!("{REDACTED}({name})"));
        }
    }
    out
}

/// The values of credentials in the environment: whatever else the redaction misses, these
/// never reach a log.
fn secret_env() -> Vec<(&'static str, String)> {
    [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "CICACHE_OCI_PASSWORD",
    ]
    .iter()
    .filter_map(|n| Some((*n, std::env::var(n).ok()?)))
    .collect()
}

/// `s` cut to at most `max` bytes at a character boundary, saying how much was left out.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes)", &s[..end], s.len() - end)
}

/// Replaces the value after every marker (`name: value`, `name=value`, `"name":"value"`,
/// `<Name>value</Name>`) with [`REDACTED`].
pub fn redact(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hit = MARKERS
            .iter()
            .find(|(m, _)| lower[i..].starts_with(m) && !ident_before(&lower, i));
        let Some((m, to_line_end)) = hit else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
            continue;
        };
        let after = i + m.len();
        // The separator: optional quotes/space, then `:`, `=` or `>`, then space/quotes.
        let rest = &text[after..];
        let sep_len = rest
            .char_indices()
            .find(|(_, c)| !matches!(c, '"' | '\'' | ' ' | ':' | '=' | '>' | '\t'))
            .map(|(k, _)| k)
            .unwrap_or(rest.len());
        let sep = &rest[..sep_len];
        if !sep.contains([':', '=', '>']) {
            // A word that only starts like a marker ("tokens", "signatures"): keep it.
            out.push_str(&text[i..after]);
            i = after;
            continue;
        }
        out.push_str(&text[i..after + sep_len]);
        let value = &text[after + sep_len..];
        let end = value
            .char_indices()
            .find(|(_, c)| {
                if *to_line_end {
                    matches!(c, '\n' | '\r' | '<' | '"')
                } else {
                    c.is_whitespace() || matches!(c, '&' | '"' | '\'' | '<' | ',' | ';' | ')')
                }
            })
            .map(|(k, _)| k)
            .unwrap_or(value.len());
        if end > 0 {
            out.push_str(REDACTED);
        }
        i = after + sep_len + end;
    }
    out
}

/// True when the byte before `i` continues an identifier (so `i` is not a marker's start).
fn ident_before(lower: &str, i: usize) -> bool {
    lower[..i]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_echoed_in_an_error_page_are_redacted() {
        let page = "<Error><Code>AccessDenied</Code><Message>Request headers: \
            Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/s3/aws4_request, \
            SignedHeaders=host;x-amz-date, Signature=0123abcd\n\
            x-amz-security-token: FwoGZXIvYXdzEXAMPLETOKEN\n\
            host: bucket.s3</Message></Error>";
        let t = server_text(page);
        for secret in [
            "AKIAEXAMPLE",
            "0123abcd",
            "FwoGZXIvYXdzEXAMPLETOKEN",
            "HMAC",
        ] {
            assert!(!t.contains(secret), "{secret} in {t}");
        }
        assert!(t.contains("AccessDenied"), "{t}");
        assert!(t.contains("host: bucket.s3"), "{t}");
    }

    #[test]
    fn query_strings_json_and_xml_are_redacted() {
        let t = redact("GET /k?X-Amz-Signature=abc123&X-Amz-Credential=AKIA%2Fx&other=1");
        assert!(!t.contains("abc123") && !t.contains("AKIA"), "{t}");
        assert!(t.contains("other=1"), "{t}");
        let t = redact(r#"{"token":"s3cr3t","user":"me"}"#);
        assert!(
            !t.contains("s3cr3t") && t.contains("\"user\":\"me\""),
            "{t}"
        );
        let t = redact("<SessionToken>s3cr3t</SessionToken>");
        assert!(!t.contains("s3cr3t"), "{t}");
        let t = redact("Proxy-Authorization: Basic dXNlcjpwYXNz");
        assert!(!t.contains("dXNlcjpwYXNz"), "{t}");
    }

    #[test]
    fn ordinary_words_stay() {
        let s = "the tokens ran out; signatures differ; passwordless";
        assert_eq!(redact(s), s);
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let t = server_text(&"é".repeat(400));
        assert!(t.len() < MAX_SERVER_TEXT + 40, "{}", t.len());
        assert!(t.ends_with("more bytes)"), "{t}");
    }
}
