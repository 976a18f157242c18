//! What the store commands print for a person: the renderings of their typed results (the
//! binary prints these, or the results' JSON).

use crate::maint::{EntryInfo, PruneOutcome, PrunePolicy};
use crate::restore::RestoreOutcome;
use cicache_units::format_bytes as human_bytes;

/// `1 entry`, `3 entries`.
pub fn entries(n: impl Into<u64>) -> String {
    match n.into() {
        1 => "1 entry".to_string(),
        n => format!("{n} entries"),
    }
}

impl RestoreOutcome {
    /// `hit KEY`, and what kind of hit when it is not the key itself in the own scope:
    /// `hit pip-1 (partial: restore key pip-)`, `hit pip-2 (scope main)`.
    pub fn hit_line(&self, restore_keys: &[String], own_scope: &str) -> String {
        let matched = self.matched_key.as_deref().unwrap_or_default();
        let mut notes = Vec::new();
        if matched != self.key {
            let prefix = restore_keys
                .iter()
                .find(|p| matched.starts_with(p.as_str()))
                .map(String::as_str)
                .unwrap_or_default();
            notes.push(format!("partial: restore key {prefix}"));
        }
        if let Some(scope) = self.matched_scope.as_deref().filter(|s| *s != own_scope) {
            notes.push(format!("scope {scope}"));
        }
        if notes.is_empty() {
            format!("hit {matched}")
        } else {
            format!("hit {matched} ({})", notes.join(", "))
        }
    }
}

/// The table of `cicache list`: columns as wide as their widest cell, then the total line
/// (`stored`: the store's deduplicated size, when known).
pub fn list_table(
    list: &[EntryInfo],
    location: &str,
    scope: Option<&str>,
    stored: Option<u64>,
) -> String {
    let in_where = match scope {
        Some(s) => format!("scope {s} of {location}"),
        None => location.to_string(),
    };
    if list.is_empty() {
        return format!("no entries in {in_where}");
    }
    let header = ["SCOPE", "KEY", "SIZE", "STORED", "CREATED", "LAST USED"];
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|e| {
            [
                e.scope.clone(),
                e.key.clone(),
                human_bytes(e.total_size),
                human_bytes(e.stored_size),
                e.created.clone().unwrap_or_else(|| "-".into()),
                e.last_used.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6], damaged: Option<&str>| {
        let [scope, key, size, stored, created, used] = cells;
        let mut l = format!(
            "{scope:<w0$}  {key:<w1$}  {size:>w2$}  {stored:>w3$}  {created:<w4$}  {used}",
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4],
        );
        if let Some(d) = damaged {
            l.push_str(&format!("  DAMAGED: {d}"));
        }
        l.trim_end().to_string()
    };
    let mut t = line(header, None);
    t.push('\n');
    for (r, e) in rows.iter().zip(list) {
        t.push_str(&line(
            [&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]],
            e.damaged.as_deref(),
        ));
        t.push('\n');
    }
    let logical = list
        .iter()
        .fold(0u64, |a, e| a.saturating_add(e.total_size));
    let stored = match (stored, scope) {
        (Some(n), None) => format!(", {} stored (each blob once)", human_bytes(n)),
        (Some(n), Some(_)) => format!("; the whole store holds {}", human_bytes(n)),
        (None, _) => String::new(),
    };
    t.push_str(&format!(
        "total: {} in {in_where}, {} of files{stored}",
        entries(list.len() as u64),
        human_bytes(logical)
    ));
    t
}

impl PruneOutcome {
    /// `would remove 3 of 3 entries ...` with --dry-run, `removed 3 of 3 entries ...` without.
    pub fn text(&self) -> String {
        let out = self;
        let mut t = String::new();
        let verb = if out.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for r in &out.entries_removed {
            t.push_str(&format!(
                "{verb} {}/{} ({}): {}\n",
                r.scope,
                r.key,
                human_bytes(r.stored_size),
                r.reason
            ));
        }
        let removed = out.entries_removed.len();
        let of = entries(out.entries_before);
        let objects = format!(
            "{} manifests and {} blobs ({})",
            out.manifests_removed,
            out.blobs_removed,
            human_bytes(out.bytes_freed)
        );
        if out.dry_run {
            t.push_str(&format!(
            "dry run: would remove {removed} of {of}, freeing {objects}; the store would then hold {}",
            human_bytes(out.store_size)
        ));
        } else {
            t.push_str(&format!(
                "removed {removed} of {of}, freeing {objects}; the store holds {}; sweep: {}",
                human_bytes(out.store_size),
                out.sweep
            ));
        }
        t
    }
}

impl PrunePolicy {
    /// The limits of the policy (and `damaged`: prune --damaged), for a prune's first line;
    /// empty: none.
    pub fn limits(&self, damaged: bool) -> Vec<String> {
        let p = self;
        let mut v = Vec::new();
        if let Some(d) = p.max_age {
            v.push(format!("max age {}", humantime::format_duration(d)));
        }
        if let Some(d) = p.max_unused {
            v.push(format!("max unused {}", humantime::format_duration(d)));
        }
        if let Some(s) = p.max_size {
            v.push(format!("max size {}", human_bytes(s)));
        }
        if let Some(n) = p.keep_last {
            v.push(format!("keep last {n}"));
        }
        if damaged {
            v.push("damaged entries".to_string());
        }
        v
    }
}
