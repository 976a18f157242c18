package io.jenkins.plugins.pipeline.cache

/** Stand-in for the Pipeline Cache (S3) plugin's step class: only its name matters to the library. */
class CacheStep {
}
