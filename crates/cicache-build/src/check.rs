//! The check: what the registry's cache tags make unnecessary. A pure decision over the
//! hashes of this build's inputs and the labels of the cache tags; no I/O, so every case is a
//! unit test.
//!
//! - **tag unchanged**: a `--push` build whose inputs (label `io.cicache.inputs`) equal a
//!   cache tag's puts that image under the tags instead of building (never with `--rebuild`,
//!   which still asks for the next decision).
//! - **mounts from the layer cache**: the steps up to the last cache-mount RUN are unchanged
//!   (label `io.cicache.mount-inputs`): docker takes them from the layer cache, so restore,
//!   inject and extract cannot help; the unchanged layers are prefetched (inline cache,
//!   unless every input is unchanged: then every step comes from the cache tag anyway).
//! - **build**, with a prefetch of the first `k` cache-mount steps that a cache tag shares
//!   (label `io.cicache.mount-steps`, the hash of the steps up to each cache-mount RUN), and
//!   ([`Rerun`]) the layer bytes the other cache-mount steps made in that image (its history):
//!   cache_in.rs skips the inject when they are a small part of the cache dir.
//!
//! Which manifests carry the labels depends on the build mode's cache exporter
//! ([`label_refs`]): with inline cache the cache tag is the image itself, so the cache tags
//! are read, and the labels and the layer cache come from the same manifest. With the
//! registry exporter the cache tag is a cache manifest (no config, no labels): the image
//! tags the build pushes (`--image` with each `--tag`) are read instead. The layers a build
//! takes come from the cache manifests, which another build than the one that pushed the
//! image tag may have written: an image tag's cache-mount steps count only when a cache
//! manifest the build reads lists every layer of that image (BuildKit exports the image's
//! own blobs, base layers too, into a `mode=max` cache). No prefetch: the registry exporter
//! keeps every layer of the cache, and a cache manifest cannot be pulled.

use cicache_docker::engine::Exporter;
use cicache_docker::skip;

pub use crate::registry::{CacheManifest, CacheTag};

/// This build's side of the comparison.
#[derive(Debug, Clone)]
pub struct CheckInput {
    /// Repository without tag.
    pub image: String,
    /// The hash of everything the image is made from, or why there is none.
    pub inputs: Result<String, String>,
    /// The hash of the steps up to the last cache-mount RUN.
    pub mount_inputs: Option<String>,
    /// (last line, hash) of the steps up to each cache-mount RUN of the image's own stages.
    pub mount_steps: Vec<(usize, String)>,
    /// The command of each of those RUNs (after its flags), in the same order.
    pub mount_commands: Vec<String>,
    /// `os/arch[/variant]` the build is for.
    pub platform: String,
    pub push: bool,
    /// `--rebuild`: build even when the inputs are unchanged (the cache-mount steps can still
    /// come from the layer cache).
    pub rebuild: bool,
    /// Where the build's layer cache goes: what the found manifests are.
    pub exporter: Exporter,
    /// The tags (without the repository) of the cache tags among the found manifests: with
    /// inline cache only these hold the layer cache; the image tags found after them count
    /// for unchanged inputs only.
    pub cache_tags: Vec<String>,
}

/// The references whose image labels the check reads, in order: where the cache is inline,
/// the cache tags (`cache_from`: own scope, then the default; the cache tag is the image),
/// then the image tags the build pushes (`image_refs`: a cache tag may keep an older image
/// than the last build's, run.rs `kept_cache_tag`); with the registry exporter the image
/// tags only (the cache tag is a cache manifest, which has no labels).
pub fn label_refs(exporter: Exporter, cache_from: &[String], image_refs: &[String]) -> Vec<String> {
    match exporter {
        Exporter::Inline => {
            let mut refs = cache_from.to_vec();
            refs.extend(
                image_refs
                    .iter()
                    .filter(|r| !cache_from.contains(r))
                    .cloned(),
            );
            refs
        }
        Exporter::Registry => image_refs.to_vec(),
    }
}

/// The layers a prefetch brings in: the Dockerfile's lines `1..=end_line`, whose first
/// `unchanged` of `total` cache-mount steps the cache tag `from` has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefetch {
    pub end_line: usize,
    pub unchanged: usize,
    pub total: usize,
    /// `IMAGE:tag`.
    pub from: String,
}

/// What the check decided.
#[derive(Debug, Clone)]
pub enum Decision {
    /// The cache tag `from` was built from the same inputs (`hash`): tag it, build nothing.
    TagUnchanged { from: CacheTag, hash: String },
    /// Every cache-mount step is unchanged since the image `from` (`IMAGE:tag`).
    MountsFromLayerCache {
        from: String,
        prefetch: Option<Prefetch>,
        /// With the registry exporter: the cache manifest (`IMAGE:tag`) that lists every
        /// layer of `from`, where the build finds those steps.
        layers_in: Option<String>,
    },
    /// Build; `prefetch` when a cache tag shares the first cache-mount steps; `rerun` when
    /// the layer cache has the first of them and the image it read says what the others made.
    Build {
        prefetch: Option<Prefetch>,
        rerun: Option<Rerun>,
    },
}

/// The cache-mount steps a build runs again while the layer cache has the ones before them,
/// and what they made in the image the check read: the most the pip cache can save them
/// (the wheels of a step are about the size of its layer). When that is a small part of the
/// cache dir, copying all of it into the builder costs more than the downloads it can save
/// (cache_in.rs, `inject_cannot_pay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rerun {
    /// `IMAGE:tag` whose steps were measured.
    pub from: String,
    /// The first `unchanged` of `total` cache-mount steps come from the layer cache.
    pub unchanged: usize,
    pub total: usize,
    /// Bytes of the layers the other steps made in `from` (compressed, as pushed).
    pub bytes: u64,
}

/// `a b` for `a  b`: whitespace as one space.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The layer bytes of the RUNs `commands` in the image's history `steps`, matched by their
/// command (BuildKit writes `RUN [|N ARG=v ...] /bin/sh -c COMMAND # buildkit`, the flags
/// left out) from the end, where the image's own steps are (a base image may have run the
/// same command), each before the one after it; `None` when one is not found.
pub fn layer_bytes_of(steps: &[crate::registry::LayerStep], commands: &[String]) -> Option<u64> {
    let mut before = steps.len();
    let mut total = 0u64;
    for c in commands.iter().rev() {
        let want = words(c);
        if want.is_empty() {
            return None;
        }
        let at = steps[..before].iter().rposition(|s| {
            let have = words(s.created_by.trim_end_matches("# buildkit"));
            have.starts_with("RUN ") && have.ends_with(&format!(" -c {want}"))
        })?;
        total = total.checked_add(steps[at].bytes)?;
        before = at;
    }
    Some(total)
}

/// The first of the registry exporter's cache manifests that lists every layer of the image
/// `t` (none for an image whose layers are unknown).
fn holding_cache<'c>(t: &CacheTag, caches: &'c [CacheManifest]) -> Option<&'c CacheManifest> {
    if t.layers.is_empty() {
        return None;
    }
    caches
        .iter()
        .find(|c| t.layers.iter().all(|l| c.layers.contains(l)))
}

/// How many of the build's cache-mount step hashes `mine` the image `t` shares, from the first
/// (its label `io.cicache.mount-step-list`).
fn shared_mount_steps(mine: &[String], t: &CacheTag) -> usize {
    let theirs: Vec<String> = t
        .labels
        .get(skip::LABEL_MOUNT_STEP_LIST)
        .map(String::as_str)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    skip::common_prefix(mine, &theirs)
}

/// The steps that run again (module [`Rerun`]): the layer cache image (of `candidates`, on
/// the build's platform) that shares the longest prefix of the cache-mount steps, some but
/// not all of them, with the bytes its history gives the others.
fn rerun(input: &CheckInput, candidates: &[&CacheTag]) -> Option<Rerun> {
    let mine: Vec<String> = input.mount_steps.iter().map(|(_, h)| h.clone()).collect();
    if input.mount_commands.len() != mine.len() {
        return None;
    }
    let (k, t) = candidates
        .iter()
        .filter(|t| input.platform.starts_with(t.platform.as_str()))
        .map(|t| (shared_mount_steps(&mine, t), *t))
        .filter(|(k, _)| *k > 0 && *k < mine.len())
        .max_by_key(|(k, _)| *k)?;
    let bytes = layer_bytes_of(&t.steps, &input.mount_commands[k..])?;
    Some(Rerun {
        from: format!("{}:{}", input.image, t.tag),
        unchanged: k,
        total: mine.len(),
        bytes,
    })
}

/// Why the check does not ask the registry at all, if it does not: it asks whenever one of
/// its decisions is possible (with `--rebuild` only the cache-mount steps' one).
pub fn skip_reason(
    inputs: &Result<String, String>,
    mount_inputs: Option<&str>,
    rebuild: bool,
) -> Option<String> {
    match inputs {
        _ if mount_inputs.is_some() => None,
        Err(why) => Some(why.clone()),
        Ok(_) if rebuild => Some("--rebuild".to_string()),
        Ok(_) => None,
    }
}

/// Decides from the tags found (own scope first, or the build's image tags in order) and,
/// with the registry exporter, the cache manifests the build reads.
pub fn decide(input: &CheckInput, found: &[CacheTag], caches: &[CacheManifest]) -> Decision {
    // The label, and the image's own platform as a backstop.
    let same_platform = |t: &CacheTag| input.platform.starts_with(t.platform.as_str());
    let has = |t: &CacheTag, label: &str, value: &str| {
        t.labels.get(label).map(String::as_str) == Some(value) && same_platform(t)
    };
    // With inline cache the layer cache is the cache tags' (an image tag's steps are not in it).
    let layer_caches: Vec<&CacheTag> = found
        .iter()
        .filter(|t| input.exporter == Exporter::Registry || input.cache_tags.contains(&t.tag))
        .collect();
    let whole = input.inputs.as_ref().ok().and_then(|h| {
        found
            .iter()
            .find(|t| has(t, skip::LABEL, h))
            .map(|t| (h, t))
    });
    let steps = input.mount_inputs.as_deref().and_then(|h| {
        layer_caches
            .iter()
            .copied()
            .find(|t| has(t, skip::LABEL_MOUNT_STEPS, h))
    });
    match (whole, steps) {
        (Some((hash, t)), _) if input.push && !input.rebuild => Decision::TagUnchanged {
            from: t.clone(),
            hash: hash.clone(),
        },
        // An image tag's steps count where a cache manifest holds its layers (module doc).
        _ if input.exporter == Exporter::Registry => {
            let held = input.mount_inputs.as_deref().and_then(|h| {
                found
                    .iter()
                    .filter(|t| {
                        t.labels.get(skip::LABEL_MOUNT_STEPS).map(String::as_str) == Some(h)
                            && same_platform(t)
                    })
                    .find_map(|t| Some((t, holding_cache(t, caches)?)))
            });
            match held {
                Some((t, c)) => Decision::MountsFromLayerCache {
                    from: format!("{}:{}", input.image, t.tag),
                    prefetch: None,
                    layers_in: Some(format!("{}:{}", input.image, c.tag)),
                },
                None => {
                    // The image tags whose layers a cache manifest the build reads holds.
                    let in_cache: Vec<&CacheTag> = found
                        .iter()
                        .filter(|t| holding_cache(t, caches).is_some())
                        .collect();
                    Decision::Build {
                        prefetch: None,
                        rerun: rerun(input, &in_cache),
                    }
                }
            }
        }
        (_, Some(t)) => {
            let from = format!("{}:{}", input.image, t.tag);
            // Up to the last cache-mount RUN of the image's own stages: a later one in another
            // stage is not in the inline cache, and the prefetch would run it (the build
            // itself does not need that stage). Not when every input is unchanged (`--rebuild`,
            // or no `--push`): every step comes from the cache tag, so the pull only costs
            // time (16 s before a 0.3 s build on the 26-graph bench); BuildKit loads what it
            // needs. (Such a build's image is not pushed over the cache tag either: run.rs,
            // `BuildReport::every_step_cached_from`.)
            let prefetch = input
                .mount_steps
                .last()
                .filter(|_| whole.is_none())
                .map(|(end, _)| Prefetch {
                    end_line: *end,
                    unchanged: input.mount_steps.len(),
                    total: input.mount_steps.len(),
                    from: from.clone(),
                });
            Decision::MountsFromLayerCache {
                from,
                prefetch,
                layers_in: None,
            }
        }
        _ => {
            let mine: Vec<String> = input.mount_steps.iter().map(|(_, h)| h.clone()).collect();
            let prefetch = layer_caches
                .iter()
                .filter(|t| same_platform(t))
                .map(|t| (shared_mount_steps(&mine, t), &t.tag))
                .filter(|(k, _)| *k > 0)
                .max_by_key(|(k, _)| *k)
                .map(|(k, tag)| Prefetch {
                    end_line: input.mount_steps[k - 1].0,
                    unchanged: k,
                    total: input.mount_steps.len(),
                    from: format!("{}:{tag}", input.image),
                });
            Decision::Build {
                prefetch,
                rerun: rerun(input, &layer_caches),
            }
        }
    }
}

/// The check's message when it decided to build.
pub fn build_message(input: &CheckInput) -> String {
    match &input.inputs {
        Ok(_) if input.rebuild => "--rebuild, and the steps up to the last cache mount are not \
                                   in the layer cache: building"
            .to_string(),
        Ok(_) if !input.push => "inputs changed or not pushed before; no --push: building into \
                                 the local daemon"
            .to_string(),
        Ok(h) if input.exporter == Exporter::Registry => format!(
            "no image tag of this build was built from these inputs ({}): building",
            h.get(..16).unwrap_or(h)
        ),
        Ok(h) => format!(
            "no cache tag was built from these inputs ({}): building",
            h.get(..16).unwrap_or(h)
        ),
        Err(why) => format!("building: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cicache_registry::oci::Manifest;
    use std::collections::BTreeMap;

    fn tag(name: &str, labels: &[(&str, &str)], platform: &str) -> CacheTag {
        CacheTag {
            tag: name.to_string(),
            manifest: Manifest {
                digest: format!("sha256:{name}"),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                raw: Vec::new(),
                body: serde_json::Value::Null,
            },
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            platform: platform.to_string(),
            layers: vec![format!("sha256:base"), format!("sha256:{name}-top")],
            steps: Vec::new(),
        }
    }

    fn cache(name: &str, layers: &[&str]) -> CacheManifest {
        CacheManifest {
            tag: name.to_string(),
            layers: layers.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn input(
        inputs: Result<&str, &str>,
        mount: Option<&str>,
        steps: &[(usize, &str)],
    ) -> CheckInput {
        CheckInput {
            image: "r:5000/app".into(),
            inputs: inputs.map(str::to_string).map_err(str::to_string),
            mount_inputs: mount.map(str::to_string),
            mount_steps: steps.iter().map(|(l, h)| (*l, h.to_string())).collect(),
            mount_commands: steps
                .iter()
                .map(|(l, _)| format!("pip install -r r{l}.txt"))
                .collect(),
            platform: "linux/amd64".into(),
            push: true,
            rebuild: false,
            exporter: Exporter::Inline,
            cache_tags: vec!["cache-feature".into(), "cache".into(), "cache-a".into()],
        }
    }

    #[test]
    fn skips_without_hashes_or_with_rebuild() {
        assert_eq!(
            skip_reason(&Err("--dry-run".into()), None, false).as_deref(),
            Some("--dry-run")
        );
        assert_eq!(
            skip_reason(&Ok("h".into()), None, true).as_deref(),
            Some("--rebuild")
        );
        // The mount steps alone are worth asking for, with --rebuild too.
        assert_eq!(skip_reason(&Err("x".into()), Some("m"), false), None);
        assert_eq!(skip_reason(&Ok("h".into()), Some("m"), true), None);
        assert_eq!(skip_reason(&Ok("h".into()), None, false), None);
    }

    #[test]
    fn rebuild_never_tags_but_takes_the_mount_steps_from_the_layer_cache() {
        let mut i = input(Ok("h1"), Some("m1"), &[(3, "s1")]);
        i.rebuild = true;
        let labels = [(skip::LABEL, "h1"), (skip::LABEL_MOUNT_STEPS, "m1")];
        // Inline cache, every input unchanged: the cache tag's steps, not prefetched (every
        // step comes from the cache tag; the pull would only cost time).
        let found = [tag("cache", &labels, "linux/amd64")];
        match decide(&i, &found, &[]) {
            Decision::MountsFromLayerCache { from, prefetch, .. } => {
                assert_eq!(from, "r:5000/app:cache");
                assert_eq!(prefetch, None);
            }
            d => panic!("{d:?}"),
        }
        // The app's code changed too: the steps after the last cache mount run, so the
        // mount steps are prefetched.
        let code = [(skip::LABEL, "h0"), (skip::LABEL_MOUNT_STEPS, "m1")];
        match decide(&i, &[tag("cache", &code, "linux/amd64")], &[]) {
            Decision::MountsFromLayerCache { prefetch, .. } => {
                assert_eq!(prefetch.map(|p| p.unchanged), Some(1));
            }
            d => panic!("{d:?}"),
        }
        // The registry exporter: `latest`'s steps, where a cache manifest holds its layers.
        i.exporter = Exporter::Registry;
        let found = [tag("latest", &labels, "linux/amd64")];
        let held = [cache("cache", &["sha256:base", "sha256:latest-top"])];
        assert!(matches!(
            decide(&i, &found, &held),
            Decision::MountsFromLayerCache { prefetch: None, .. }
        ));
        // Nothing held: build, and the message says why it was not tagged.
        assert!(matches!(
            decide(&i, &found, &[]),
            Decision::Build { prefetch: None, .. }
        ));
        assert!(
            build_message(&i).starts_with("--rebuild"),
            "{}",
            build_message(&i)
        );
    }

    #[test]
    fn same_inputs_and_push_tag_the_cache_tag() {
        let i = input(Ok("h1"), Some("m1"), &[(3, "s1")]);
        let found = [tag("cache", &[(skip::LABEL, "h1")], "linux/amd64")];
        match decide(&i, &found, &[]) {
            Decision::TagUnchanged { from, hash } => {
                assert_eq!(from.tag, "cache");
                assert_eq!(hash, "h1");
            }
            d => panic!("{d:?}"),
        }
        // Without --push the image is built into the daemon; the mount steps still count.
        let mut local = i.clone();
        local.push = false;
        let found = [tag(
            "cache",
            &[(skip::LABEL, "h1"), (skip::LABEL_MOUNT_STEPS, "m1")],
            "linux/amd64",
        )];
        assert!(matches!(
            decide(&local, &found, &[]),
            Decision::MountsFromLayerCache { .. }
        ));
    }

    #[test]
    fn inline_cache_tags_an_image_tag_but_takes_layers_from_cache_tags_only() {
        let i = input(Ok("h2"), Some("m1"), &[(3, "s1")]);
        // The cache tag kept an older image (run.rs kept_cache_tag); `latest` is the last
        // build's, from the same inputs: tagged from `latest`.
        let found = [
            tag(
                "cache",
                &[(skip::LABEL, "h1"), (skip::LABEL_MOUNT_STEPS, "m1")],
                "linux/amd64",
            ),
            tag(
                "latest",
                &[(skip::LABEL, "h2"), (skip::LABEL_MOUNT_STEPS, "m1")],
                "linux/amd64",
            ),
        ];
        match decide(&i, &found, &[]) {
            Decision::TagUnchanged { from, .. } => assert_eq!(from.tag, "latest"),
            d => panic!("{d:?}"),
        }
        // An image tag's mount steps are not in the layer cache: only the cache tag's count.
        let mut other = i.clone();
        other.inputs = Ok("h3".into());
        match decide(&other, &found, &[]) {
            Decision::MountsFromLayerCache { from, .. } => assert_eq!(from, "r:5000/app:cache"),
            d => panic!("{d:?}"),
        }
        let only_latest = [found[1].clone()];
        assert!(matches!(
            decide(&other, &only_latest, &[]),
            Decision::Build { prefetch: None, .. }
        ));
        // Both unchanged: the cache tag first (its image is the one with the layer cache).
        let both = [
            tag("cache", &[(skip::LABEL, "h2")], "linux/amd64"),
            found[1].clone(),
        ];
        match decide(&i, &both, &[]) {
            Decision::TagUnchanged { from, .. } => assert_eq!(from.tag, "cache"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn another_platform_never_matches() {
        let i = input(Ok("h1"), Some("m1"), &[(3, "s1")]);
        let found = [tag(
            "cache",
            &[(skip::LABEL, "h1"), (skip::LABEL_MOUNT_STEPS, "m1")],
            "linux/arm64",
        )];
        assert!(matches!(
            decide(&i, &found, &[]),
            Decision::Build { prefetch: None, .. }
        ));
    }

    #[test]
    fn unchanged_mount_steps_come_from_the_layer_cache_with_a_prefetch_of_all() {
        let i = input(Ok("h2"), Some("m1"), &[(3, "s1"), (5, "s2")]);
        let found = [tag(
            "cache-feature",
            &[(skip::LABEL, "h1"), (skip::LABEL_MOUNT_STEPS, "m1")],
            "linux/amd64",
        )];
        match decide(&i, &found, &[]) {
            Decision::MountsFromLayerCache { from, prefetch, .. } => {
                assert_eq!(from, "r:5000/app:cache-feature");
                assert_eq!(
                    prefetch,
                    Some(Prefetch {
                        end_line: 5,
                        unchanged: 2,
                        total: 2,
                        from: "r:5000/app:cache-feature".into()
                    })
                );
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_shared_prefix_of_mount_steps_is_prefetched_from_the_longest_match() {
        let i = input(Ok("h3"), Some("m3"), &[(3, "s1"), (5, "s2"), (8, "s3")]);
        let found = [
            tag(
                "cache-a",
                &[(skip::LABEL_MOUNT_STEP_LIST, "s1 x y")],
                "linux/amd64",
            ),
            tag(
                "cache",
                &[(skip::LABEL_MOUNT_STEP_LIST, "s1 s2 z")],
                "linux/amd64",
            ),
        ];
        match decide(&i, &found, &[]) {
            Decision::Build {
                prefetch: Some(p), ..
            } => {
                assert_eq!(p.unchanged, 2);
                assert_eq!(p.total, 3);
                assert_eq!(p.end_line, 5);
                assert_eq!(p.from, "r:5000/app:cache");
            }
            d => panic!("{d:?}"),
        }
        // Nothing shared: no prefetch.
        let none = [tag(
            "cache",
            &[(skip::LABEL_MOUNT_STEP_LIST, "q")],
            "linux/amd64",
        )];
        assert!(matches!(
            decide(&i, &none, &[]),
            Decision::Build { prefetch: None, .. }
        ));
    }

    fn steps(entries: &[(&str, u64)]) -> Vec<crate::registry::LayerStep> {
        entries
            .iter()
            .map(|(c, b)| crate::registry::LayerStep {
                created_by: c.to_string(),
                bytes: *b,
            })
            .collect()
    }

    #[test]
    fn the_history_gives_the_layer_bytes_of_runs_by_their_command() {
        let h = steps(&[
            ("/bin/sh -c #(nop) ADD file:1 in / ", 30),
            ("WORKDIR /app", 0),
            ("COPY requirements-ml.txt . # buildkit", 1),
            (
                "RUN /bin/sh -c pip install    --no-deps -r requirements-ml.txt # buildkit",
                340,
            ),
            ("COPY requirements.txt . # buildkit", 1),
            (
                "RUN |1 N=2 /bin/sh -c pip install --no-deps -r requirements.txt # buildkit",
                16,
            ),
            (
                "RUN /bin/bash -o pipefail -c pip install -r requirements.txt # buildkit",
                4,
            ),
        ]);
        let cmd = |c: &str| vec![c.to_string()];
        // Whitespace as written, build arguments and the shell do not matter.
        assert_eq!(
            layer_bytes_of(&h, &cmd("pip install --no-deps -r requirements-ml.txt")),
            Some(340)
        );
        assert_eq!(
            layer_bytes_of(&h, &cmd("pip install --no-deps   -r requirements.txt")),
            Some(16)
        );
        // From the end, in order: the same command twice takes one entry each.
        let twice = vec![
            "pip install -r requirements.txt".to_string(),
            "pip install -r requirements.txt".to_string(),
        ];
        assert_eq!(layer_bytes_of(&h, &twice), None, "only one such RUN");
        assert_eq!(layer_bytes_of(&h, &twice[..1]), Some(4));
        // A base image that ran the same command earlier: the image's own step counts.
        let mut based = steps(&[("RUN /bin/sh -c pip install -r requirements.txt", 900)]);
        based.extend(h.clone());
        assert_eq!(layer_bytes_of(&based, &twice[..1]), Some(4));
        assert_eq!(layer_bytes_of(&based, &twice), Some(904));
        let both = vec![
            "pip install --no-deps -r requirements-ml.txt".to_string(),
            "pip install --no-deps -r requirements.txt".to_string(),
        ];
        assert_eq!(layer_bytes_of(&h, &both), Some(356));
        // Out of order, unknown, empty (a heredoc), or only a suffix of a word: nothing.
        let reversed: Vec<String> = both.iter().rev().cloned().collect();
        assert_eq!(layer_bytes_of(&h, &reversed), None);
        assert_eq!(layer_bytes_of(&h, &cmd("pip install numpy")), None);
        assert_eq!(layer_bytes_of(&h, &cmd("")), None);
        assert_eq!(
            layer_bytes_of(&h, &cmd("install -r requirements.txt")),
            None
        );
        assert_eq!(layer_bytes_of(&h, &cmd("COPY requirements.txt .")), None);
        // A size that does not add up is no answer.
        let huge = steps(&[("RUN /bin/sh -c a", u64::MAX), ("RUN /bin/sh -c b", 1)]);
        assert_eq!(
            layer_bytes_of(&huge, &["a".to_string(), "b".to_string()]),
            None
        );
    }

    #[test]
    fn the_steps_that_run_again_are_measured_in_the_layer_cache_image() {
        let mut i = input(Ok("h2"), Some("m2"), &[(3, "s1"), (5, "s2")]);
        let history = steps(&[
            ("RUN /bin/sh -c pip install -r r3.txt # buildkit", 300),
            ("RUN /bin/sh -c pip install -r r5.txt # buildkit", 16),
        ]);
        let mut cache_tag = tag(
            "cache",
            &[(skip::LABEL_MOUNT_STEP_LIST, "s1 old")],
            "linux/amd64",
        );
        cache_tag.steps = history.clone();
        let want = Rerun {
            from: "r:5000/app:cache".into(),
            unchanged: 1,
            total: 2,
            bytes: 16,
        };
        match decide(&i, std::slice::from_ref(&cache_tag), &[]) {
            Decision::Build { rerun, .. } => assert_eq!(rerun, Some(want.clone())),
            d => panic!("{d:?}"),
        }
        // Nothing shared: every step runs, the whole cache can help.
        let mut first = cache_tag.clone();
        first
            .labels
            .insert(skip::LABEL_MOUNT_STEP_LIST.into(), "new s2".into());
        match decide(&i, &[first], &[]) {
            Decision::Build { rerun, .. } => assert_eq!(rerun, None),
            d => panic!("{d:?}"),
        }
        // Inline cache: an image tag is not layer cache.
        let mut latest = cache_tag.clone();
        latest.tag = "latest".into();
        match decide(&i, std::slice::from_ref(&latest), &[]) {
            Decision::Build { rerun, .. } => assert_eq!(rerun, None),
            d => panic!("{d:?}"),
        }
        // The registry exporter: an image tag whose layers a cache manifest holds.
        i.exporter = Exporter::Registry;
        let held = [cache("cache", &["sha256:base", "sha256:cache-top"])];
        match decide(&i, std::slice::from_ref(&latest), &held) {
            Decision::Build { rerun, .. } => assert_eq!(
                rerun,
                Some(Rerun {
                    from: "r:5000/app:latest".into(),
                    ..want.clone()
                })
            ),
            d => panic!("{d:?}"),
        }
        // ... and not when none does.
        let lost = [cache("cache", &["sha256:base"])];
        match decide(&i, std::slice::from_ref(&latest), &lost) {
            Decision::Build { rerun, .. } => assert_eq!(rerun, None),
            d => panic!("{d:?}"),
        }
        // A history that does not name the steps: nothing to go by.
        latest.steps = Vec::new();
        match decide(&i, std::slice::from_ref(&latest), &held) {
            Decision::Build { rerun, .. } => assert_eq!(rerun, None),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn build_messages() {
        let mut i = input(Ok("0123456789abcdef0123"), None, &[]);
        assert_eq!(
            build_message(&i),
            "no cache tag was built from these inputs (0123456789abcdef): building"
        );
        i.push = false;
        assert!(build_message(&i).contains("no --push"));
        i.inputs = Err("an ONBUILD image".into());
        assert_eq!(build_message(&i), "building: an ONBUILD image");
    }

    #[test]
    fn the_exporter_decides_which_tags_carry_the_labels() {
        let cache = [
            "r:5000/app:cache-pr-7".to_string(),
            "r:5000/app:cache".into(),
        ];
        let images = ["r:5000/app:1.0".to_string(), "r:5000/app:latest".into()];
        // Inline cache: the cache tag is the image; the image tags after it.
        assert_eq!(
            label_refs(Exporter::Inline, &cache, &images),
            [&cache[..], &images[..]].concat()
        );
        // The registry exporter: the cache tag is a cache manifest; the image tags are read.
        assert_eq!(label_refs(Exporter::Registry, &cache, &images), images);
    }

    #[test]
    fn registry_exporter_tags_an_unchanged_image_tag() {
        let mut i = input(Ok("h1"), Some("m1"), &[(3, "s1")]);
        i.exporter = Exporter::Registry;
        // What an image tag pushed by buildx carries (read through its index).
        let found = [
            tag("1.0", &[(skip::LABEL, "h0")], "linux/amd64"),
            tag(
                "latest",
                &[
                    (skip::LABEL, "h1"),
                    (skip::LABEL_MOUNT_STEPS, "m1"),
                    (skip::LABEL_MOUNT_STEP_LIST, "s1"),
                ],
                "linux/amd64",
            ),
        ];
        match decide(&i, &found, &[]) {
            Decision::TagUnchanged { from, hash } => {
                assert_eq!(from.tag, "latest");
                assert_eq!(hash, "h1");
            }
            d => panic!("{d:?}"),
        }
        // Another platform's image never counts.
        let arm = [tag("latest", &[(skip::LABEL, "h1")], "linux/arm64")];
        assert!(matches!(
            decide(&i, &arm, &[]),
            Decision::Build { prefetch: None, .. }
        ));
    }

    #[test]
    fn registry_exporter_takes_the_mount_steps_only_where_a_cache_manifest_holds_the_image() {
        let mut i = input(Ok("h2"), Some("m1"), &[(3, "s1"), (5, "s2")]);
        i.exporter = Exporter::Registry;
        // `latest` has the same cache-mount steps (the app code changed since).
        let found = [tag(
            "latest",
            &[
                (skip::LABEL, "h1"),
                (skip::LABEL_MOUNT_STEPS, "m1"),
                (skip::LABEL_MOUNT_STEP_LIST, "s1 s2"),
            ],
            "linux/amd64",
        )];
        // A cache manifest that lists every layer of it (written by the same build): the
        // steps come from there; never a prefetch.
        let whole = [
            cache("cache-pr-7", &["sha256:base"]),
            cache(
                "cache",
                &["sha256:base", "sha256:latest-top", "sha256:other"],
            ),
        ];
        match decide(&i, &found, &whole) {
            Decision::MountsFromLayerCache {
                from,
                prefetch,
                layers_in,
            } => {
                assert_eq!(from, "r:5000/app:latest");
                assert_eq!(prefetch, None);
                assert_eq!(layers_in.as_deref(), Some("r:5000/app:cache"));
            }
            d => panic!("{d:?}"),
        }
        // Another build wrote the cache manifests since (a layer of latest is missing), or
        // there is none: restore and inject run.
        let other = [cache("cache", &["sha256:base", "sha256:newer-top"])];
        for caches in [&other[..], &[]] {
            assert!(matches!(
                decide(&i, &found, caches),
                Decision::Build { prefetch: None, .. }
            ));
        }
        // Another platform's image never counts.
        let mut arm = found.clone();
        arm[0].platform = "linux/arm64".into();
        assert!(matches!(
            decide(&i, &arm, &whole),
            Decision::Build { prefetch: None, .. }
        ));
        // The same labels on an inline cache tag: from the layer cache, with a prefetch; on
        // an image tag with inline cache: not in the layer cache.
        i.exporter = Exporter::Inline;
        assert!(matches!(
            decide(&i, &found, &[]),
            Decision::Build { prefetch: None, .. }
        ));
        let mut on_cache = found.clone();
        on_cache[0].tag = "cache".into();
        assert!(matches!(
            decide(&i, &on_cache, &[]),
            Decision::MountsFromLayerCache {
                prefetch: Some(_),
                layers_in: None,
                ..
            }
        ));
        // Without --push the whole hash is no reason to tag, on either exporter.
        i.exporter = Exporter::Registry;
        i.push = false;
        i.inputs = Ok("h1".into());
        assert!(matches!(
            decide(&i, &found, &[]),
            Decision::Build { prefetch: None, .. }
        ));
        assert!(build_message(&i).contains("no --push"));
        i.push = true;
        i.inputs = Ok("0123456789abcdef0123".into());
        assert_eq!(
            build_message(&i),
            "no image tag of this build was built from these inputs (0123456789abcdef): building"
        );
    }
}
