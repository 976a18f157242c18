package jenkins.plugins.jobcacher.pipeline

/** Stand-in for the Job Cacher plugin's step class: only its name matters to the library. */
class CacheStep {
}
