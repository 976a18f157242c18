package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/**
 * Which plugin provides the pipeline's `cache` step, if any. Two plugins register a step of
 * that name with different arguments:
 *   - Job Cacher (jobcacher):        cache(caches: [arbitraryFileCache(path:, ...)]) { }
 *   - Pipeline Cache (jenkins-pipeline-cache, S3): cache(path:, key:, restoreKeys:) { }
 * With cachePlugin: 'detect' the step is found through StepDescriptor.byFunctionName, and the
 * plugin by the step's class. That needs a trusted (global) library: in a sandboxed library the
 * lookup is refused (answer 'unavailable') and queues a script approval, so it only runs when
 * asked for; naming the plugin (cachePlugin: 'jobcacher' or 'jenkins-pipeline-cache') needs no lookup.
 */
class CachePlugin implements Serializable {
    private static final long serialVersionUID = 1L

    static final String JOBCACHER = 'jobcacher'
    /** The j3t S3 plugin's id; 'pipeline-cache' (what earlier versions of the library said) is an alias. */
    static final String S3 = 'jenkins-pipeline-cache'
    static final String S3_ALIAS = 'pipeline-cache'
    static final String DETECT = 'detect'
    /** The values of the steps' cachePlugin: argument and of CICACHE_CACHE_PLUGIN. */
    static final List<String> CHOICES = [DETECT, JOBCACHER, S3, S3_ALIAS]

    @NonCPS
    static String canonical(String name) {
        return name == S3_ALIAS ? S3 : name
    }

    static final Map CLASS_PREFIXES = [
        'jenkins.plugins.jobcacher.'        : JOBCACHER,
        'io.jenkins.plugins.pipeline.cache.': S3,
    ]

    /** 'jobcacher', 'jenkins-pipeline-cache', 'none', 'unknown:<class>' or 'unavailable:<why>'. */
    @NonCPS
    static String detect() {
        Object d
        try {
            d = org.jenkinsci.plugins.workflow.steps.StepDescriptor.byFunctionName('cache')
        } catch (Throwable e) {
            // In a sandboxed library this is a RejectedAccessException; say so without more reflection.
            String why = e.message ?: e.toString()
            return "unavailable:${why.length() > 160 ? why.substring(0, 160) + '...' : why}".toString()
        }
        if (d == null) {
            return 'none'
        }
        String cls
        try {
            cls = d.clazz?.name ?: d.getClass().name
        } catch (Throwable e) {
            cls = d.getClass().name
        }
        for (Map.Entry e : CLASS_PREFIXES.entrySet()) {
            if (cls.startsWith(e.key.toString())) {
                return e.value.toString()
            }
        }
        return "unknown:${cls}".toString()
    }

    @NonCPS
    static boolean usable(String detected) {
        return detected == JOBCACHER || detected == S3
    }

    @NonCPS
    static String explain(String detected) {
        if (detected == 'none') {
            return 'no `cache` step is installed (neither the Job Cacher plugin nor the Pipeline Cache plugin)'
        }
        if (detected?.startsWith('unknown:')) {
            return "the `cache` step comes from an unsupported plugin (${detected.substring(8)})"
        }
        if (detected?.startsWith('unavailable:')) {
            return "the library cannot look up the `cache` step (the lookup needs a trusted global library: " +
                "name the plugin instead, cachePlugin: 'jobcacher' or 'jenkins-pipeline-cache'; ${detected.substring(12)})"
        }
        return "detected ${detected}"
    }

    /** The one log line of an 'auto' build that falls back to the helper's store. */
    @NonCPS
    static String fallbackLine(String detected) {
        return "cicache: cacheBackend 'auto': ${explain(detected)}; keeping the cache dir in the cicache store instead."
    }

    @NonCPS
    static String missingMessage(String step, String detected) {
        return "${step}: cacheBackend 'plugin' needs the Job Cacher plugin (jobcacher) or the Pipeline Cache plugin " +
            "(jenkins-pipeline-cache), but ${explain(detected)}. Install one of them, pass cachePlugin: 'jobcacher' or " +
            "'jenkins-pipeline-cache' if the lookup is refused, or use cacheBackend: 'auto' or 'helper'."
    }
}
