//! Self-healing: what a restore or verify does with damage it found.
//!
//! A save checks only that an object exists before it reuses it (reading every object back
//! would cost as much as writing it), so a damaged object stays damaged until something
//! removes it. Here a restore or verify that refused an entry checks each object it blamed
//! again, on its own: a manifest against the hash of its bytes, a blob against the hash of its
//! content, a pack against every file its name fixes. An object whose stored bytes are wrong
//! (not one the store failed to send) is removed: the *quarantine*. Every save that needs it
//! then finds it missing and writes it again, which repairs every entry that shares it. The
//! entry's ref is removed too when it still points at the damaged manifest, so the next save
//! under its key writes a new entry instead of saying "exists".
//!
//! Only proven damage is removed: a read that failed (a network error, a timeout) blames
//! nothing, and a pack is judged only when the manifest's file list is the one its name fixes.

use std::io::{self, Read};

use serde::Serialize;

use crate::entry::{Suspect, Tracked};
use crate::error::{BackendError, Result, StoreError};
use crate::format::{self, Ref};
use crate::progress::NoProgress;
use crate::save::HashReader;
use crate::store::Store;

/// What healing did about one damaged entry.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct Healed {
    /// Damaged objects removed from the store (the next save writes them again).
    pub objects_removed: Vec<String>,
    /// The entry's ref was removed (the next save of its key writes a new entry).
    pub ref_removed: bool,
    /// Why something could not be done (a read-only store); healing never fails the caller.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl Healed {
    /// A sentence for a warning: what was removed, and what the next save will do.
    pub fn describe(&self, scope: &str, key: &str) -> String {
        let mut parts = Vec::new();
        if !self.objects_removed.is_empty() {
            parts.push(format!(
                "removed {} damaged object(s) ({})",
                self.objects_removed.len(),
                self.objects_removed.join(", ")
            ));
        }
        if self.ref_removed {
            parts.push(format!("removed the entry {scope}/{key}"));
        }
        let mut s = if parts.is_empty() {
            String::new()
        } else {
            format!(
                "{}; the next save writes {} again",
                parts.join(" and "),
                if self.ref_removed { "it" } else { "them" }
            )
        };
        for p in &self.problems {
            if !s.is_empty() {
                s.push_str("; ");
            }
            s.push_str(p);
        }
        s
    }
}

/// What healing may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HealMode {
    /// Remove objects proven damaged.
    pub quarantine: bool,
    /// Remove the entry's ref when damage is proven.
    pub remove_ref: bool,
}

impl HealMode {
    /// A restore: both (the entry could not be restored; its key is free for the next save).
    pub const RESTORE: HealMode = HealMode {
        quarantine: true,
        remove_ref: true,
    };
    /// `verify`: the objects only; the entry stays listed as damaged.
    pub const VERIFY: HealMode = HealMode {
        quarantine: true,
        remove_ref: false,
    };
    /// A dry run: nothing.
    pub const NONE: HealMode = HealMode {
        quarantine: false,
        remove_ref: false,
    };
}

/// The verdict on one object, checked on its own.
enum Verdict {
    Good,
    /// Missing, or its stored bytes are wrong.
    Damaged {
        present: bool,
    },
    /// Could not tell (the store failed to send it, or the manifest cannot vouch for a pack).
    Unknown,
}

impl Store {
    /// Checks each suspect object on its own and removes those proven damaged; then removes
    /// the ref `r` when any object was proven damaged (or `ref_damaged`) and the ref still
    /// names the same manifest. Never fails: problems are reported in the result.
    pub(crate) fn heal(
        &self,
        scope: &str,
        key: &str,
        r: Option<&Ref>,
        suspects: &[Suspect],
        ref_damaged: bool,
        mode: HealMode,
    ) -> Healed {
        let mut out = Healed::default();
        let mut proven = ref_damaged;
        if mode == HealMode::NONE {
            return out;
        }
        for s in suspects {
            let name = match s {
                Suspect::Manifest(h) => format::manifest_name(h),
                Suspect::Blob(h) | Suspect::Pack(h, _) => format::blob_name(h),
            };
            match self.judge(s) {
                Verdict::Good | Verdict::Unknown => {}
                Verdict::Damaged { present: false } => proven = true,
                Verdict::Damaged { present: true } => {
                    proven = true;
                    if !mode.quarantine {
                        continue;
                    }
                    match self.backend.delete(&name) {
                        Ok(()) => out.objects_removed.push(name),
                        Err(e) => out
                            .problems
                            .push(format!("the damaged object could not be removed: {e}")),
                    }
                }
            }
        }
        if proven && mode.remove_ref {
            match self.remove_ref_if_same(scope, key, r.map(|r| r.manifest.as_str())) {
                Ok(removed) => out.ref_removed = removed,
                Err(e) => out
                    .problems
                    .push(format!("the damaged entry could not be removed: {e}")),
            }
        }
        out
    }

    /// Removes `scope/key` (ref and last-use marker) if its ref still names `manifest`, or is
    /// itself damaged (`manifest` None): a save that replaced it meanwhile is kept.
    pub(crate) fn remove_ref_if_same(
        &self,
        scope: &str,
        key: &str,
        manifest: Option<&str>,
    ) -> Result<bool> {
        let still = match self.read_ref(scope, key) {
            Ok(None) => return Ok(false),
            Ok(Some(now)) => manifest == Some(now.manifest.as_str()),
            Err(e) if e.is_corrupt() => true,
            Err(e) => return Err(e),
        };
        if !still {
            return Ok(false);
        }
        self.delete_ref(scope, key)?;
        Ok(true)
    }

    /// Deletes an entry's ref (under every name it may have) and its last-use marker.
    pub(crate) fn delete_ref(&self, scope: &str, key: &str) -> Result<(), BackendError> {
        for name in format::ref_names(scope, key) {
            self.backend.delete(&name)?;
        }
        self.backend.delete(&format::used_name(scope, key))
    }

    fn judge(&self, s: &Suspect) -> Verdict {
        let name = match s {
            Suspect::Manifest(h) => format::manifest_name(h),
            Suspect::Blob(h) | Suspect::Pack(h, _) => format::blob_name(h),
        };
        if let Suspect::Pack(h, files) = s
            && format::pack_hash(files.iter().map(|(f, n)| (f.as_str(), *n))) != *h
        {
            // The manifest's list is not the one the pack's name fixes: it cannot judge it.
            return Verdict::Unknown;
        }
        let reader = match self.backend.get(&name) {
            Ok(Some(r)) => r,
            Ok(None) => return Verdict::Damaged { present: false },
            Err(_) => return Verdict::Unknown,
        };
        let mut tracked = Tracked {
            inner: reader,
            failed: false,
        };
        let good = match s {
            Suspect::Manifest(h) => whole_hash_is(&mut tracked, h).unwrap_or(false),
            Suspect::Blob(h) => zstd::Decoder::new(&mut tracked)
                .and_then(|mut d| whole_hash_is(&mut d, h))
                .unwrap_or(false),
            Suspect::Pack(_, files) => zstd::Decoder::new(&mut tracked)
                .map(|d| pack_is(d, files))
                .unwrap_or(false),
        };
        if good {
            Verdict::Good
        } else if tracked.failed {
            Verdict::Unknown
        } else {
            Verdict::Damaged { present: true }
        }
    }
}

/// The blake3 of everything `r` yields is `hash` (false also when reading fails).
fn whole_hash_is(r: &mut dyn Read, hash: &str) -> io::Result<bool> {
    let mut hr = HashReader {
        inner: r,
        hasher: blake3::Hasher::new(),
        n: 0,
        progress: &NoProgress,
    };
    crate::save::copy_large(&mut hr, &mut io::sink())?;
    Ok(hr.hasher.finalize().to_hex().as_str() == hash)
}

/// The decoded pack is exactly its files, each of its size and hash.
fn pack_is(mut dec: impl Read, files: &[(String, u64)]) -> bool {
    for (hash, size) in files {
        let mut hr = HashReader {
            inner: (&mut dec).take(*size),
            hasher: blake3::Hasher::new(),
            n: 0,
            progress: &NoProgress,
        };
        if crate::save::copy_large(&mut hr, &mut io::sink()).is_err()
            || hr.n != *size
            || hr.hasher.finalize().to_hex().as_str() != hash
        {
            return false;
        }
    }
    let mut extra = [0u8; 1];
    matches!(dec.read(&mut extra), Ok(0))
}

/// True for errors that mean the entry itself is wrong (as opposed to the store or the
/// target failing): a restore tries the next key after them.
pub(crate) fn is_refusal(e: &StoreError) -> bool {
    !matches!(e, StoreError::Backend(_))
}
