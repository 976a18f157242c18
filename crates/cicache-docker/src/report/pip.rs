//! pip's (and uv's) own lines: which distribution files came from the cache and which were
//! downloaded, with their sizes.

use super::util::parse_size;

/// What one pip line says about a distribution file.
#[derive(Debug, Clone, PartialEq)]
pub enum PipEvent {
    /// `Using cached numpy-1.26.4-...whl (18.3 MB)` or `File was already downloaded PATH`.
    Cached { file: String, bytes: Option<u64> },
    /// `Downloading numpy-1.26.4-...whl (18.3 MB)` (pip prints the whole URL for an index
    /// other than PyPI) or uv's `Downloading numpy (17.5MiB)`.
    Downloaded { file: String, bytes: Option<u64> },
}

/// Reads one line of pip output (already stripped of any docker prefix).
pub fn parse_line(line: &str) -> Option<PipEvent> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("Using cached ") {
        let (file, bytes) = file_and_size(rest)?;
        return Some(PipEvent::Cached { file, bytes });
    }
    if let Some(rest) = line.strip_prefix("File was already downloaded ") {
        let (file, bytes) = file_and_size(rest)?;
        return Some(PipEvent::Cached { file, bytes });
    }
    if let Some(rest) = line.strip_prefix("Downloading ") {
        let (file, bytes) = file_and_size(rest)?;
        return Some(PipEvent::Downloaded { file, bytes });
    }
    None
}

/// `URL-or-file (SIZE)` -> (`file`, size). Metadata files (`x.whl.metadata`, PEP 658) are not
/// distributions and give `None`.
fn file_and_size(rest: &str) -> Option<(String, Option<u64>)> {
    let rest = rest.trim();
    let (target, bytes) = match rest.rsplit_once(" (") {
        Some((t, size)) if size.ends_with(')') => {
            (t.trim(), parse_size(size.trim_end_matches(')')))
        }
        _ => (rest, None),
    };
    // `Downloading x.whl (1 MB)` has no spaces in the target; anything else with spaces is
    // some other message that happens to start with the same word.
    if target.is_empty() || target.contains(' ') {
        return None;
    }
    let target = target.split('#').next().unwrap_or(target);
    let file = target.rsplit('/').next().unwrap_or(target);
    if file.is_empty() || file.ends_with(".metadata") {
        return None;
    }
    Some((file.to_string(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_lines() {
        assert_eq!(
            parse_line("  Using cached six-1.16.0-py2.py3-none-any.whl (11 kB)"),
            Some(PipEvent::Cached {
                file: "six-1.16.0-py2.py3-none-any.whl".into(),
                bytes: Some(11_000)
            })
        );
        assert_eq!(
            parse_line(
                "  Downloading http://127.0.0.1:9/files/numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl#sha256=ab (18.3 MB)"
            ),
            Some(PipEvent::Downloaded {
                file: "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl".into(),
                bytes: Some(18_300_000)
            })
        );
        assert_eq!(
            parse_line("Downloading numpy (17.5MiB)"),
            Some(PipEvent::Downloaded {
                file: "numpy".into(),
                bytes: Some(18_350_080)
            })
        );
        assert_eq!(
            parse_line("  Downloading requests-2.32.3-py3-none-any.whl.metadata (4.6 kB)"),
            None
        );
        assert_eq!(parse_line("Downloading the internet, please wait"), None);
        assert_eq!(parse_line("Collecting six"), None);
    }
}
