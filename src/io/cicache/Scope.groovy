package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/**
 * The store scope of a build and the scopes its restores fall back to.
 *
 * A pull request (CHANGE_ID set) is `pr-<CHANGE_ID>` and falls back to its target branch, then
 * the default branch; a branch build is its BRANCH_NAME (or GIT_BRANCH without `origin/`) and
 * falls back to the default branch. Saves only ever write to the build's own scope, so a pull
 * request cannot change what the default branch restores.
 */
class Scope implements Serializable {
    private static final long serialVersionUID = 1L

    /** Returns [scope: String or null (helper's default), fallbacks: List<String>]. */
    @NonCPS
    static Map resolve(String override, String changeId, String changeTarget, String branchName,
                       String gitBranch, String defaultBranch, List<String> fallbackOverride = null) {
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
        List<String> fallbacks = []
        if (fallbackOverride != null) {
            fallbacks.addAll(fallbackOverride)
        } else {
            if (!blank(changeId) && !blank(changeTarget)) {
                fallbacks.add(changeTarget)
            }
            if (!blank(defaultBranch)) {
                fallbacks.add(defaultBranch)
            }
        }
        List<String> out = []
        for (String f : fallbacks) {
            if (!blank(f) && f != scope && !out.contains(f)) {
                out.add(f)
            }
        }
        return [scope: scope, fallbacks: out]
    }

    @NonCPS
    private static boolean blank(String s) {
        return s == null || s.trim().isEmpty()
    }
}
