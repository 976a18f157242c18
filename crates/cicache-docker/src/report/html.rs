//! The HTML report: one self-contained page (inline CSS, no script, nothing fetched) that a
//! Jenkins build page (HTML Publisher) or a mail shows as it is.
//!
//! Top to bottom: the verdict and its figures, why it missed, the failed step with its error
//! lines, the timeline (cicache's phases and one bar per step), the slowest steps, the wheels.
//! Dark text on a light page. Cached, ran and failed differ in pattern and in words, not only
//! in colour (blue hatching / orange / vermillion cross-hatching with a heavy border, from the
//! Okabe-Ito palette, and each row says `CACHED`, its time or `FAILED`). Rows stack on a phone.
//!
//! No `style` attribute anywhere: the bars are SVG shapes placed and painted by attributes, so
//! where a Content-Security-Policy blocks inline CSS (Jenkins' default for archived files and
//! HTML Publisher pages) the page loses its layout polish but keeps its timeline.
//!
//! The markup is stable for tests and scrapers: `.verdict`, `.fig-steps [data-cached]
//! [data-total]`, `.fig-wheels [data-from-cache] [data-fetched]`, `.miss`, `.failure`,
//! `.timeline .row.step` (one per step; `data-status`, `data-kind`), `.timeline .row.phase`,
//! `.wheels tr[data-source]`.

use std::fmt::Write as _;

use super::render::status_word;
use super::timeline::{Bar, BarStatus, TimeAxis, Timeline};
use super::{BuildReport, StepKind, WheelSource, human_bytes, human_seconds};

/// `<`, `>`, `&`, `"` and `'` escaped, for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // Control characters from a log (not tab or newline) have no place in a page.
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
:root{--ink:#1a1a1a;--muted:#555;--line:#d0d0d0;--bg:#fff;--soft:#f4f4f4;
--cached:#56b4e9;--cached-edge:#0072b2;--ran:#e69f00;--ran-edge:#8a5d00;--failed:#d55e00;--other:#b8b8b8}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1200px;margin:0 auto;padding:16px}
article{margin-bottom:40px}
h1{font-size:1.3rem;line-height:1.35;margin:.2rem 0 .6rem;padding:.5rem .7rem;border-left:8px solid var(--cached-edge);background:var(--soft);overflow-wrap:anywhere}
h1.failed{border-left-color:var(--failed)}
h1.missed{border-left-color:var(--ran)}
h2{font-size:1.05rem;margin:1.4rem 0 .4rem;border-bottom:1px solid var(--line);padding-bottom:.2rem}
.file{color:var(--muted);margin:0;font-size:.85rem;overflow-wrap:anywhere}
.badge{display:inline-block;font-size:.75rem;font-weight:700;letter-spacing:.04em;text-transform:uppercase;border:2px solid currentColor;border-radius:3px;padding:0 .35rem;margin-right:.5rem;vertical-align:.15em}
.figures{display:flex;flex-wrap:wrap;gap:8px;list-style:none;padding:0;margin:0}
.figures li{border:1px solid var(--line);border-radius:4px;padding:.35rem .6rem;min-width:8.5rem}
.figures b{display:block;font-size:1.35rem}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.85rem}
code{background:var(--soft);padding:0 .2rem;overflow-wrap:anywhere}
pre{background:#fbf3ee;border:1px solid var(--line);border-left:6px solid var(--failed);padding:.6rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere;margin:.4rem 0}
.miss ul{margin:.3rem 0;padding-left:1.2rem}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:.85rem;margin:.3rem 0 .6rem;color:var(--muted)}
.legend span{display:inline-flex;align-items:center;gap:6px}
.legend svg{vertical-align:middle}
.tl{border-top:1px solid var(--line)}
.lane{font-weight:600;font-size:.85rem;margin:.6rem 0 .2rem;color:var(--muted)}
.row{display:grid;grid-template-columns:minmax(9rem,34%) minmax(0,1fr) 5.2rem;gap:8px;align-items:center;min-height:20px;font-size:.8rem;border-bottom:1px solid #eee}
.row:hover{background:#eef3fa}
.row .name{min-width:0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace}
.row .val{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.track{display:block;background:var(--soft)}
.row.failed .val{font-weight:700}
.row.internal .name{color:var(--muted)}
.axis{display:grid;grid-template-columns:minmax(9rem,34%) minmax(0,1fr) 5.2rem;gap:8px;font-size:.75rem;color:var(--muted)}
.axis .track{background:none}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{text-align:left;padding:.2rem .4rem;border-bottom:1px solid #eee;vertical-align:top}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.name{overflow-wrap:anywhere;font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:.8rem}
.note{color:var(--muted);font-size:.85rem;margin:.2rem 0}
footer{color:var(--muted);font-size:.8rem;text-align:center;padding:1rem}
@media (max-width:640px){main{padding:10px}h1{font-size:1.1rem}
.row{grid-template-columns:minmax(0,1fr) 4.6rem;gap:2px 6px;padding:2px 0}
.row .name{grid-column:1/3}
.axis{grid-template-columns:minmax(0,1fr) 4.6rem}.axis>span:first-child{display:none}
.figures li{min-width:0;flex:1 1 40%}}
"#;

/// The bars' fills: SVG patterns, so that cached and failed differ from ran in shape too.
/// SVG geometry and presentation attributes are not CSS: the timeline draws also where a
/// Content-Security-Policy forbids inline styles (Jenkins serves archived files and HTML
/// Publisher pages with `style-src 'self'` unless a resource root URL is set up).
const DEFS: &str = r##"<svg width="0" height="0" aria-hidden="true" focusable="false"><defs>
<pattern id="cc-cached" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/><rect width="3" height="6" fill="#56b4e9"/></pattern>
<pattern id="cc-failed" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#d55e00"/><path d="M0 0L6 6M6 0L0 6" stroke="#1a1a1a" stroke-width="1.2"/></pattern>
</defs></svg>
"##;

/// `fill` and `stroke` attributes of a bar.
fn paint(s: BarStatus) -> &'static str {
    match s {
        BarStatus::Cached => r##"fill="url(#cc-cached)" stroke="#0072b2" stroke-width="1""##,
        BarStatus::Ran => r##"fill="#e69f00" stroke="#8a5d00" stroke-width="1""##,
        BarStatus::Failed => r##"fill="url(#cc-failed)" stroke="#1a1a1a" stroke-width="2""##,
        BarStatus::Stopped => {
            r##"fill="#ffffff" stroke="#333333" stroke-width="1" stroke-dasharray="3 2""##
        }
        BarStatus::Other => r##"fill="#b8b8b8" stroke="#8c8c8c" stroke-width="1""##,
    }
}

/// One page holding a report per `(name, report)`, in order.
pub fn document(reports: &[(&str, &BuildReport)]) -> String {
    let mut o = String::new();
    let title = match reports {
        [(name, r)] => format!("cicache report: {} ({name})", r.verdict),
        _ => format!("cicache report: {} logs", reports.len()),
    };
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{DEFS}<main>\n",
        escape(&title)
    );
    for (i, (name, r)) in reports.iter().enumerate() {
        article(&mut o, i, name, r);
    }
    let _ = write!(
        o,
        "</main>\n<footer>cicache {} build report</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    o
}

fn article(o: &mut String, index: usize, name: &str, r: &BuildReport) {
    let (class, badge) = if r.failure.is_some() {
        ("failed", "build failed")
    } else if r.miss.is_some() {
        ("missed", "cache missed")
    } else if r.steps.total > 0 || r.wheels.from_cache > 0 {
        ("cached", "all from cache")
    } else {
        ("cached", "report")
    };
    let _ = write!(
        o,
        "<article class=\"report\" id=\"report-{index}\">\n<p class=\"file\">{} &middot; {}</p>\n\
         <h1 class=\"verdict {class}\"><span class=\"badge\">{badge}</span> {}</h1>\n",
        escape(name),
        escape(r.format.describe()),
        escape(&r.verdict)
    );
    figures(o, r);
    miss(o, r);
    failure(o, r);
    timeline(o, r, &r.timeline());
    slowest(o, r);
    wheels(o, r);
    o.push_str("</article>\n");
}

fn figures(o: &mut String, r: &BuildReport) {
    o.push_str("<ul class=\"figures\">\n");
    if r.steps.total > 0 {
        let _ = writeln!(
            o,
            "<li class=\"fig-steps\" data-cached=\"{c}\" data-total=\"{t}\"><b>{c}/{t}</b> steps cached</li>",
            c = r.steps.cached,
            t = r.steps.total
        );
    }
    let w = &r.wheels;
    let fetched = w.from_cache + w.downloaded;
    if fetched > 0 {
        let _ = writeln!(
            o,
            "<li class=\"fig-wheels\" data-from-cache=\"{}\" data-fetched=\"{fetched}\"><b>{}/{fetched}</b> wheels from cache</li>",
            w.from_cache, w.from_cache
        );
        let _ = writeln!(
            o,
            "<li class=\"fig-bytes\"><b>{}</b> not downloaded ({} downloaded)</li>",
            human_bytes(w.bytes_from_cache),
            human_bytes(w.bytes_downloaded)
        );
    }
    if let Some(s) = r.build_seconds {
        let how = match r.time_source {
            Some(super::TimeSource::StepSum) => "build (sum of step times)",
            Some(super::TimeSource::Timestamps) => "build (first start to last end)",
            _ => "build",
        };
        let _ = writeln!(
            o,
            "<li class=\"fig-time\"><b>{}</b> {how}</li>",
            human_seconds(s)
        );
    }
    o.push_str("</ul>\n");
}

fn miss(o: &mut String, r: &BuildReport) {
    let Some(m) = &r.miss else {
        if r.steps.total > 0 && r.ok {
            o.push_str(
                "<section class=\"miss none\">\n<h2>Why it missed</h2>\n<p>Nothing missed: every \
                 step came from the layer cache and pip downloaded nothing.</p>\n</section>\n",
            );
        }
        return;
    };
    o.push_str("<section class=\"miss\">\n<h2>Why it missed</h2>\n");
    match &m.first_missed {
        Some(step) => {
            let _ = writeln!(
                o,
                "<p>First step that ran instead of coming from the cache: <code class=\"first-missed\">{}</code></p>",
                escape(step)
            );
        }
        None => o.push_str("<p>Every step came from the layer cache.</p>\n"),
    }
    if m.reasons.is_empty() {
        o.push_str(
            "<p class=\"note\">Nothing more is known from this log. Give <code>--build-json</code> \
             (the <code>cicache --json build</code> output) for the check, restore and inject.</p>\n",
        );
    } else {
        o.push_str("<ul>\n");
        for reason in &m.reasons {
            let kind = serde_json::to_value(reason.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "<li data-kind=\"{}\">{}</li>",
                escape(&kind),
                code_spans(&escape(&reason.message))
            );
        }
        o.push_str("</ul>\n");
    }
    o.push_str("</section>\n");
}

/// `` `x` `` -> `<code>x</code>` in escaped text (the reasons quote instructions that way).
fn code_spans(escaped: &str) -> String {
    let parts: Vec<&str> = escaped.split('`').collect();
    if parts.len() < 3 || parts.len().is_multiple_of(2) {
        return escaped.to_string();
    }
    let mut o = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i % 2 == 1 {
            o.push_str("<code>");
            o.push_str(p);
            o.push_str("</code>");
        } else {
            o.push_str(p);
        }
    }
    o
}

fn failure(o: &mut String, r: &BuildReport) {
    let Some(f) = &r.failure else { return };
    o.push_str("<section class=\"failure\">\n<h2>Failed step</h2>\n");
    match &f.step {
        Some(s) => {
            let _ = writeln!(o, "<p><code class=\"failed-step\">{}</code></p>", escape(s));
        }
        None => o.push_str("<p>The build failed before or outside any step.</p>\n"),
    }
    let _ = write!(o, "<pre class=\"error\">{}", escape(&f.error));
    if let Some(code) = f.exit_code {
        let _ = write!(o, "\n(exit code {code})");
    }
    if !f.lines.is_empty() {
        o.push_str("\n\n");
        let lines: Vec<String> = f.lines.iter().map(|l| escape(l)).collect();
        o.push_str(&lines.join("\n"));
    }
    o.push_str("</pre>\n</section>\n");
}

/// A tick every 1, 2 or 5 times a power of ten, about 5 of them.
fn tick_step(end: f64) -> f64 {
    if end <= 0.0 || !end.is_finite() {
        return 1.0;
    }
    let raw = end / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    let nice = if m < 1.5 {
        1.0
    } else if m < 3.5 {
        2.0
    } else if m < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * pow
}

fn pct(x: f64, end: f64) -> f64 {
    let p = if end > 0.0 { x / end * 100.0 } else { 0.0 };
    if p.is_finite() {
        p.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

fn timeline(o: &mut String, r: &BuildReport, t: &Timeline) {
    if t.steps.is_empty() && t.phases.is_empty() {
        return;
    }
    o.push_str("<section class=\"timeline\">\n<h2>Timeline</h2>\n");
    let note = match t.axis {
        TimeAxis::Clock => "Bars sit where each step ran (BuildKit's own start and end times).",
        TimeAxis::StepTimes => {
            "Plain progress gives each step's time but no clock: bars are laid one after the \
             other, in the order the steps ended (stages that ran in parallel overlapped)."
        }
        TimeAxis::Order => {
            "The classic builder prints no times: one slot per step, in build order."
        }
    };
    let _ = writeln!(o, "<p class=\"note\">{note}</p>");
    o.push_str("<div class=\"legend\">");
    for (status, words) in [
        (BarStatus::Cached, "cached (hatched)"),
        (BarStatus::Ran, "ran (solid)"),
        (BarStatus::Failed, "FAILED (cross-hatched)"),
        (BarStatus::Stopped, "canceled / no end (dashed)"),
        (BarStatus::Other, "base image, docker's own work"),
    ] {
        let _ = write!(
            o,
            "<span><svg width=\"30\" height=\"14\" aria-hidden=\"true\"><rect x=\"1\" y=\"1\" \
             width=\"28\" height=\"12\" {}/></svg>{words}</span> ",
            paint(status)
        );
    }
    o.push_str("</div>\n");
    let end = if t.end > 0.0 { t.end } else { 1.0 };
    o.push_str("<div class=\"tl\">\n");
    if !t.phases.is_empty() {
        o.push_str("<div class=\"lane\">cicache build phases</div>\n");
        for b in &t.phases {
            let word = match b.status {
                BarStatus::Other => "skipped".to_string(),
                BarStatus::Failed => "FAILED".to_string(),
                BarStatus::Stopped => format!("warn {}", human_seconds(b.length)),
                _ => human_seconds(b.length),
            };
            let msg = r
                .phases
                .iter()
                .find(|p| p.name == b.label)
                .and_then(|p| p.message.clone())
                .unwrap_or_default();
            row(o, "phase", b, &b.label, &msg, &word, end);
        }
        o.push_str("<div class=\"lane\">docker build steps</div>\n");
    }
    for b in &t.steps {
        let Some(s) = b.step.and_then(|i| r.step_list.get(i)) else {
            continue;
        };
        let class = match s.kind {
            StepKind::Step => "step",
            StepKind::From => "from",
            StepKind::Internal => "internal",
        };
        let mut word = status_word(s);
        if s.kind == StepKind::Internal && s.status == super::StepStatus::Done {
            word = s.seconds.map(human_seconds).unwrap_or(word);
        }
        let label = if t.axis == TimeAxis::Order {
            s.name.clone()
        } else {
            match (&s.stage, &s.position) {
                (Some(st), Some(p)) => format!("[{st} {p}] {}", b.label),
                (None, Some(p)) => format!("[{p}] {}", b.label),
                _ => b.label.clone(),
            }
        };
        let title = match &s.error {
            Some(e) => format!("{}\n{e}", s.name),
            None => s.name.clone(),
        };
        row(o, class, b, &label, &title, &word, end);
    }
    axis(o, t.axis, end);
    o.push_str("</div>\n</section>\n");
}

fn status_class(s: BarStatus) -> &'static str {
    match s {
        BarStatus::Cached => "cached",
        BarStatus::Ran => "ran",
        BarStatus::Failed => "failed",
        BarStatus::Stopped => "stopped",
        BarStatus::Other => "other",
    }
}

/// The narrowest bar, in percent of the axis: a cached step takes no time but is drawn.
const MIN_BAR: f64 = 0.4;

fn row(o: &mut String, class: &str, b: &Bar, label: &str, title: &str, word: &str, end: f64) {
    let st = status_class(b.status);
    let mut x = pct(b.start, end);
    let w = pct(b.length, end).max(MIN_BAR);
    if x + w > 100.0 {
        x = (100.0 - w).max(0.0);
    }
    let _ = writeln!(
        o,
        "<div class=\"row {class} {st}\" data-status=\"{st}\" title=\"{}\"><span class=\"name\">{}</span>\
         <svg class=\"track\" width=\"100%\" height=\"16\" aria-hidden=\"true\"><rect class=\"bar {st}\" \
         x=\"{x:.3}%\" y=\"2\" width=\"{w:.3}%\" height=\"12\" {}/></svg>\
         <span class=\"val\">{}</span></div>",
        escape(title),
        escape(label),
        paint(b.status),
        escape(word)
    );
}

fn axis(o: &mut String, axis: TimeAxis, end: f64) {
    let step = if axis == TimeAxis::Order {
        tick_step(end).max(1.0).round()
    } else {
        tick_step(end)
    };
    o.push_str(
        "<div class=\"axis\"><span></span><svg class=\"track\" width=\"100%\" height=\"18\" \
         font-size=\"11\" fill=\"#555555\">",
    );
    let mut x = 0.0;
    let mut n = 0;
    while x <= end * 1.0001 && n < 12 {
        let label = match axis {
            TimeAxis::Order => format!("{}", x as u64),
            _ => human_seconds(x),
        };
        let p = pct(x, end);
        // The first label starts at the axis' start, the last ends at its end.
        let anchor = if n == 0 {
            "start"
        } else if p > 92.0 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            o,
            "<line x1=\"{p:.3}%\" x2=\"{p:.3}%\" y1=\"0\" y2=\"4\" stroke=\"#888888\"/>\
             <text x=\"{p:.3}%\" y=\"15\" text-anchor=\"{anchor}\">{}</text>",
            escape(&label)
        );
        x += step;
        n += 1;
    }
    o.push_str("</svg>");
    let unit = if axis == TimeAxis::Order {
        "steps"
    } else {
        "time"
    };
    let _ = writeln!(o, "<span>{unit}</span></div>");
}

fn slowest(o: &mut String, r: &BuildReport) {
    if r.slowest.is_empty() {
        return;
    }
    o.push_str(
        "<section class=\"slowest\">\n<h2>Slowest steps</h2>\n<table>\n\
         <tr><th class=\"num\">time</th><th>step</th></tr>\n",
    );
    for s in &r.slowest {
        let _ = writeln!(
            o,
            "<tr><td class=\"num\">{}</td><td class=\"name\">{}</td></tr>",
            human_seconds(s.seconds),
            escape(&s.name)
        );
    }
    o.push_str("</table>\n</section>\n");
}

fn wheels(o: &mut String, r: &BuildReport) {
    if r.wheel_list.is_empty() {
        return;
    }
    let w = &r.wheels;
    let _ = write!(
        o,
        "<section class=\"wheels\">\n<h2>Wheels</h2>\n<p class=\"note\">{} from cache ({}), {} downloaded ({}); sizes as pip printed them.</p>\n\
         <table>\n<tr><th>file</th><th>from</th><th class=\"num\">size</th></tr>\n",
        w.from_cache,
        human_bytes(w.bytes_from_cache),
        w.downloaded,
        human_bytes(w.bytes_downloaded)
    );
    // Downloads first: they are what the cache did not have.
    let mut list: Vec<_> = r.wheel_list.iter().collect();
    list.sort_by_key(|w| w.source != WheelSource::Download);
    for wh in list {
        let (source, word) = match wh.source {
            WheelSource::Cache => ("cache", "cache"),
            WheelSource::Download => ("download", "<b>downloaded</b>"),
        };
        let _ = writeln!(
            o,
            "<tr data-source=\"{source}\"><td class=\"name\">{}</td><td>{word}</td><td class=\"num\">{}</td></tr>",
            escape(&wh.file),
            wh.bytes.map(human_bytes).unwrap_or_else(|| "?".into())
        );
    }
    o.push_str("</table>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>a&b\"c'</script>"),
            "&lt;script&gt;a&amp;b&quot;c&#39;&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{1b}[0m"), "a\u{fffd}[0m");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10.0), 2.0);
        assert_eq!(tick_step(72.0), 10.0);
        assert_eq!(tick_step(0.0), 1.0);
        assert!((tick_step(0.9) - 0.2).abs() < 1e-12);
    }
}
