//! What the build says while it works. The binary prints it; tests can record it.

/// Receives the build's messages. Implementations decide where they go (stderr, a log).
pub trait Events: Sync {
    /// A progress line for the person reading the log (`restore: skipped (--no-restore)`).
    fn info(&self, msg: &str);
    /// A cache problem that does not stop the build.
    fn warn(&self, msg: &str);
    /// What failed the build, said as it happens (the outcome holds it too).
    fn error(&self, msg: &str);
    /// A result line of a store transfer, for a person; not printed under `--json`.
    fn summary(&self, msg: &str);
    /// One line of docker's output.
    fn docker_line(&self, line: &str);
    /// Whether the cache dance's helper builds are shown too (`-v`).
    fn verbose(&self) -> bool;
    /// Progress of a store transfer (`restore`, `save`).
    fn progress(&self, what: &str) -> Box<dyn cicache_store::Progress>;
}
