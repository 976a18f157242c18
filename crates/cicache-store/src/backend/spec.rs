//! A store spec (`--store`, `CICACHE_STORE`, `store:` in cicache.yml), checked before any
//! use: a spec that names no store cicache knows is refused here, never opened as a
//! directory of that name (`s3:/bucket` once became `./s3:/bucket`).

use std::fmt;
use std::path::PathBuf;

/// The forms a spec may take, for messages.
pub const VALID_FORMS: &str = "DIR, dir:DIR, s3://BUCKET/PREFIX, oci://REGISTRY/REPOSITORY";

/// Which store a spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// No spec: the embedded default directory (`default_store_dir`).
    Default,
    /// `DIR` or `dir:DIR`.
    Dir(PathBuf),
    /// `s3://{0}`: the part after the scheme.
    S3(String),
    /// `oci://{0}`: the part after the scheme.
    Oci(String),
}

/// A spec that names no store; the message names the spec and shows the valid forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store {spec:?} is not valid: {reason}; valid forms: {VALID_FORMS}")]
pub struct InvalidSpec {
    pub spec: String,
    pub reason: String,
}

impl StoreSpec {
    /// Parses a spec; an empty one is the default store (an empty variable counts as unset).
    pub fn parse(spec: &str) -> Result<StoreSpec, InvalidSpec> {
        let bad = |reason: String| InvalidSpec {
            spec: spec.to_string(),
            reason,
        };
        if spec.is_empty() {
            return Ok(StoreSpec::Default);
        }
        if let Some(rest) = spec.strip_prefix("s3://") {
            #[cfg(feature = "s3")]
            super::s3::S3Settings::parse(rest, |_| None).map_err(bad)?;
            #[cfg(not(feature = "s3"))]
            if rest.is_empty() {
                return Err(bad("no bucket after s3://".into()));
            }
            return Ok(StoreSpec::S3(rest.to_string()));
        }
        if let Some(rest) = spec.strip_prefix("oci://") {
            let ok = rest
                .split_once('/')
                .is_some_and(|(reg, repo)| !reg.is_empty() && !repo.trim_matches('/').is_empty());
            if !ok {
                return Err(bad("an OCI store needs a registry and a repository".into()));
            }
            return Ok(StoreSpec::Oci(rest.to_string()));
        }
        if let Some(dir) = spec.strip_prefix("dir:") {
            if dir.is_empty() {
                return Err(bad("no directory after dir:".into()));
            }
            return Ok(StoreSpec::Dir(PathBuf::from(dir)));
        }
        if let Some(scheme) = scheme_of(spec) {
            let lower = scheme.to_ascii_lowercase();
            let reason = match lower.as_str() {
                "s3" | "oci" => format!("{scheme}: needs two slashes, as in {lower}://..."),
                _ => format!("unknown scheme {scheme}:"),
            };
            return Err(bad(format!(
                "{reason} (a directory whose name has a colon is dir:{spec} or ./{spec})"
            )));
        }
        Ok(StoreSpec::Dir(PathBuf::from(spec)))
    }

    /// True for a store named by the user (not the embedded default).
    pub fn is_named(&self) -> bool {
        !matches!(self, StoreSpec::Default)
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Default => write!(f, "the default store"),
            StoreSpec::Dir(p) => write!(f, "dir:{}", p.display()),
            StoreSpec::S3(r) => write!(f, "s3://{r}"),
            StoreSpec::Oci(r) => write!(f, "oci://{r}"),
        }
    }
}

/// `s3` of `s3:/x`: a leading URI scheme (a letter, then letters, digits, `+`, `-`, `.`)
/// followed by a colon.
fn scheme_of(spec: &str) -> Option<&str> {
    let (scheme, _) = spec.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_specs() {
        assert_eq!(StoreSpec::parse("").unwrap(), StoreSpec::Default);
        assert_eq!(
            StoreSpec::parse("/var/cache/x").unwrap(),
            StoreSpec::Dir("/var/cache/x".into())
        );
        assert_eq!(
            StoreSpec::parse("./rel/dir").unwrap(),
            StoreSpec::Dir("./rel/dir".into())
        );
        assert_eq!(
            StoreSpec::parse("dir:odd:name").unwrap(),
            StoreSpec::Dir("odd:name".into())
        );
        assert_eq!(
            StoreSpec::parse("oci://127.0.0.1:5000/team/cache").unwrap(),
            StoreSpec::Oci("127.0.0.1:5000/team/cache".into())
        );
        #[cfg(feature = "s3")]
        assert_eq!(
            StoreSpec::parse("s3://bucket/prefix").unwrap(),
            StoreSpec::S3("bucket/prefix".into())
        );
    }

    #[test]
    fn invalid_specs_name_the_spec_and_the_valid_forms() {
        for (spec, says) in [
            ("s3:/bucket", "needs two slashes"),
            ("s3:bucket", "needs two slashes"),
            ("S3://bucket", "needs two slashes"),
            ("gs://bucket", "unknown scheme gs:"),
            ("file:///tmp/x", "unknown scheme file:"),
            ("oci://registry", "registry and a repository"),
            ("dir:", "no directory"),
            ("rel:dir", "unknown scheme rel:"),
        ] {
            let e = StoreSpec::parse(spec).expect_err(spec).to_string();
            assert!(e.contains(&format!("{spec:?}")), "{spec}: {e}");
            assert!(e.contains(says), "{spec}: {e}");
            assert!(e.contains(VALID_FORMS), "{spec}: {e}");
        }
        #[cfg(feature = "s3")]
        for spec in ["s3://", "s3://Bad_Bucket/x", "s3://ab/x"] {
            let e = StoreSpec::parse(spec).expect_err(spec).to_string();
            assert!(e.contains("bucket name"), "{spec}: {e}");
        }
    }
}
