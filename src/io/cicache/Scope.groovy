package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/**
 * The store scope of a build and the scopes its restores fall back to.
 *
 * A pull request (CHANGE_ID set) is `pr-<CHANGE_ID>` and falls back to its target branch, then
 * the default branch; a branch build is its BRANCH_NAME (or GIT_BRANCH without `origin/`) and
 * falls back to the default branch. Saves only ever write to the build's own scope, so a pull
 * request cannot change what the default branch restores. A build of the default branch has no
 * fallback scope, which is how the helper knows to write the registry's `IMAGE:cache` tag
 * (other scopes write `IMAGE:cache-<scope>`).
 */
class Scope implements Serializable {
    private static final long serialVersionUID = 1L

    /** The names a repository's default branch conventionally has, when nothing says which. */
    static final List<String> CONVENTIONAL_DEFAULTS = ['main', 'master']

    /**
     * The default branch candidates: the step's defaultBranch:, else CICACHE_DEFAULT_BRANCH,
     * else this build's branch when the multibranch project marks it primary (branch-api sets
     * BRANCH_IS_PRIMARY=true), else both 'main' and 'master'.
     */
    @NonCPS
    static List<String> defaultBranches(String given, String envDefault, String branchIsPrimary, String branchName) {
        if (!blank(given)) {
            return [given]
        }
        if (!blank(envDefault)) {
            return [envDefault]
        }
        if (branchIsPrimary == 'true' && !blank(branchName)) {
            return [branchName]
        }
        return new ArrayList<String>(CONVENTIONAL_DEFAULTS)
    }

    /**
     * Returns [scope: String or null (helper's default), fallbacks: List<String>, defaultBranch:
     * the one branch a plugin that takes only one (Job Cacher) seeds a new branch's cache from].
     * defaults: the default branch candidates (defaultBranches()); a String is one candidate.
     */
    @NonCPS
    static Map resolve(String override, String changeId, String changeTarget, String branchName,
                       String gitBranch, Object defaults, List<String> fallbackOverride = null) {
        List<String> candidates = []
        for (Object d : (defaults instanceof Collection ? (Collection) defaults : [defaults])) {
            if (d != null && !blank(d.toString())) {
                candidates.add(d.toString())
            }
        }
        String scope = blank(override) ? null : override
        if (scope == null && !blank(changeId)) {
            scope = "pr-${changeId}".toString()
        }
        if (scope == null && !blank(branchName)) {
            scope = branchName
        }
        if (scope == null && !blank(gitBranch)) {
            scope = gitBranch.replaceFirst(/^(refs\/heads\/|origin\/)/, '')
        }
        boolean isDefault = scope != null && candidates.contains(scope)
        List<String> fallbacks = []
        if (fallbackOverride != null) {
            fallbacks.addAll(fallbackOverride)
        } else if (!isDefault) {
            if (!blank(changeId) && !blank(changeTarget)) {
                fallbacks.add(changeTarget)
            }
            fallbacks.addAll(candidates)
        }
        List<String> out = []
        for (String f : fallbacks) {
            if (!blank(f) && f != scope && !out.contains(f)) {
                out.add(f)
            }
        }
        String seed = isDefault ? scope : (!blank(changeId) && !blank(changeTarget) ? changeTarget :
            (candidates ? candidates[0] : null))
        return [scope: scope, fallbacks: out, defaultBranch: seed]
    }

    @NonCPS
    private static boolean blank(String s) {
        return s == null || s.trim().isEmpty()
    }
}
