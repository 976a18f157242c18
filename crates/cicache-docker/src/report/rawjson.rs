//! BuildKit rawjson progress (`--progress=rawjson`): one `SolveStatus` document per line, as
//! BuildKit's `client.SolveStatus` encodes it:
//!
//! ```text
//! {"vertexes":[{"digest":"sha256:..","inputs":[..],"name":"[2/3] RUN x","started":"RFC3339",
//!               "completed":"RFC3339","cached":true,"error":".."}],
//!  "statuses":[{"id":"..","vertex":"sha256:..","current":1,"timestamp":".."}],
//!  "logs":[{"vertex":"sha256:..","stream":1,"data":"BASE64","timestamp":".."}]}
//! ```
//!
//! A vertex appears in many documents as it progresses; later fields win.

use std::collections::HashMap;

use serde_json::Value;

use super::util::{base64_decode, parse_rfc3339};
use super::{Collector, StepStatus};

pub(crate) fn parse(text: &str, c: &mut Collector) {
    let mut order = 0u64;
    let mut started: HashMap<String, f64> = HashMap::new();
    // Log data arrives in chunks that may split a line: keep the unfinished part per vertex.
    let mut partial: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let Ok(doc) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(vs) = doc.get("vertexes").and_then(Value::as_array) {
            for v in vs {
                let Some(digest) = v.get("digest").and_then(Value::as_str) else {
                    continue;
                };
                let key = format!("raw{digest}");
                let i = match c.get(&key) {
                    Some(i) => i,
                    None => {
                        let Some(name) = v.get("name").and_then(Value::as_str) else {
                            continue;
                        };
                        order += 1;
                        c.step(&key, 0, order, digest, name)
                    }
                };
                let start = v
                    .get("started")
                    .and_then(Value::as_str)
                    .and_then(parse_rfc3339);
                let done = v
                    .get("completed")
                    .and_then(Value::as_str)
                    .and_then(parse_rfc3339);
                if let Some(s) = start {
                    started.entry(key.clone()).or_insert(s);
                }
                let first = started.get(&key).copied();
                let cached = v.get("cached").and_then(Value::as_bool).unwrap_or(false);
                let error = v
                    .get("error")
                    .and_then(Value::as_str)
                    .filter(|e| !e.is_empty());
                if let (Some(s), Some(d)) = (first, done) {
                    c.span(s, d);
                }
                let Some(step) = c.step_mut(i) else { continue };
                if let Some(e) = error {
                    step.status = if e.contains("context canceled") {
                        StepStatus::Canceled
                    } else {
                        StepStatus::Error
                    };
                    step.error = Some(e.to_string());
                } else if cached {
                    step.status = StepStatus::Cached;
                } else if done.is_some() && step.status == StepStatus::Incomplete {
                    step.status = StepStatus::Done;
                }
                if let (Some(s), Some(d)) = (first, done)
                    && !cached
                {
                    step.seconds = Some((d - s).max(0.0));
                }
                if step.start.is_none() {
                    step.start = first;
                }
            }
        }
        if let Some(logs) = doc.get("logs").and_then(Value::as_array) {
            for l in logs {
                let Some(vertex) = l.get("vertex").and_then(Value::as_str) else {
                    continue;
                };
                let key = format!("raw{vertex}");
                let Some(i) = c.get(&key) else { continue };
                let Some(data) = l
                    .get("data")
                    .and_then(Value::as_str)
                    .and_then(base64_decode)
                else {
                    continue;
                };
                let buf = partial.entry(key).or_default();
                buf.push_str(&String::from_utf8_lossy(&data));
                while let Some(nl) = buf.find('\n') {
                    let line: String = buf.drain(..=nl).collect();
                    c.output(i, &super::util::clean_line(line.trim_end_matches('\n')));
                }
            }
        }
    }
    for (key, rest) in partial {
        if let Some(i) = c.get(&key)
            && !rest.is_empty()
        {
            c.output(i, &super::util::clean_line(&rest));
        }
    }
    c.note_build(0);
}
