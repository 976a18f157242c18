//! Registry failures worth one more try: a push that the registry answered with a server
//! error or throttling, or whose connection dropped. ECR and distribution both answer a push
//! now and then with a 500 or a 503 that the next request does not get; docker retries a
//! layer upload but not the manifest, and buildx retries neither. A failed build step is
//! never one of these: only the push of what was built is tried again.

use crate::report::parse_log;

/// What docker printed for a registry answer that another try may not get, lowercase: the
/// reason is the matched words.
const TRANSIENT: &[&str] = &[
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
    "429 too many requests",
    "toomanyrequests",
    "connection reset by peer",
    "i/o timeout",
    "tls handshake timeout",
    "unexpected eof",
];

/// The words that make `text` a transient registry answer, if any.
pub fn transient_reason(text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    TRANSIENT.iter().copied().find(|w| lower.contains(w))
}

/// For a failed build's output: when the step that failed is the export or push of the image
/// (BuildKit's "exporting to image", buildx's "pushing NAME with docker") and the registry's
/// answer is transient, that answer (docker's error line). `None` for a failed build step, a
/// Dockerfile error, or a registry answer that will not change (401, 404, a bad manifest).
pub fn push_failure(lines: &[String]) -> Option<String> {
    let failure = parse_log(&lines.join("\n")).failure?;
    let step = failure.step.as_deref()?.to_ascii_lowercase();
    let pushing = step.starts_with("pushing") || step.starts_with("exporting");
    (pushing && transient_reason(&failure.error).is_some()).then_some(failure.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_server_error_on_the_push_is_transient() {
        // What buildx 0.13 printed on Docker 26 (containerd store) when distribution 2.8
        // answered the HEAD of the tag with a 500.
        let out = lines(
            "#12 exporting to image\n\
             #12 naming to 127.0.0.1:5000/app:latest done\n\
             #12 DONE 0.1s\n\
             #13 pushing 127.0.0.1:5000/app:latest with docker\n\
             #13 ERROR: unexpected status from HEAD request to http://127.0.0.1:5000/v2/app/manifests/latest: 500 Internal Server Error\n\
             ------\n \
             > pushing 127.0.0.1:5000/app:latest with docker:\n\
             ------\n\
             ERROR: unexpected status from HEAD request to http://127.0.0.1:5000/v2/app/manifests/latest: 500 Internal Server Error",
        );
        let why = push_failure(&out).expect("transient");
        assert!(why.contains("500 Internal Server Error"), "{why}");
    }

    #[test]
    fn a_failed_step_or_a_lasting_answer_is_not() {
        // pip hit a 503 of its index: the step failed, the push never ran.
        let pip = lines(
            "#7 [2/3] RUN pip install -r requirements.txt\n\
             #7 3.1 ERROR: HTTP error 503 Service Unavailable while getting https://x/y.whl\n\
             #7 ERROR: process \"/bin/sh -c pip install -r requirements.txt\" did not complete successfully: exit code: 1\n\
             ------\n \
             > [2/3] RUN pip install -r requirements.txt:\n\
             ------\n\
             ERROR: failed to solve: process \"/bin/sh -c pip install -r requirements.txt\" did not complete successfully: exit code: 1",
        );
        assert_eq!(push_failure(&pip), None);
        // A step that fetched from a server that answered 503: the step failed, not the push.
        let add = lines(
            "#5 [2/3] ADD https://example.com/model.tar /models/\n\
             #5 ERROR: failed to load cache key: invalid response status 503 Service Unavailable\n\
             ERROR: failed to solve: failed to load cache key: invalid response status 503 Service Unavailable",
        );
        assert!(transient_reason(&add.join("\n")).is_some());
        let step = parse_log(&add.join("\n")).failure.and_then(|f| f.step);
        assert!(
            step.as_deref().is_some_and(|s| s.contains("ADD")),
            "{step:?}"
        );
        assert_eq!(push_failure(&add), None);
        // Denied: the next try gets the same answer.
        let denied = lines(
            "#13 pushing 127.0.0.1:5000/app:latest with docker\n\
             #13 ERROR: failed to authorize: 401 Unauthorized\n\
             ERROR: failed to authorize: 401 Unauthorized",
        );
        assert_eq!(push_failure(&denied), None);
        assert_eq!(push_failure(&[]), None);
    }

    #[test]
    fn reasons() {
        assert_eq!(
            transient_reason("received unexpected HTTP status: 503 Service Unavailable"),
            Some("503 service unavailable")
        );
        assert_eq!(
            transient_reason("toomanyrequests: Rate exceeded"),
            Some("toomanyrequests")
        );
        assert_eq!(transient_reason("denied: requested access is denied"), None);
        assert_eq!(transient_reason("manifest unknown"), None);
    }
}
