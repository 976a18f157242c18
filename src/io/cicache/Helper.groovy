package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/**
 * Finds the cicache helper on the agent, in this order:
 * 1. `bin:` argument or CICACHE_BIN: must be an executable file;
 * 2. `cicache` on the agent's PATH, when its version matches the library's (or no download is
 *    configured: then a different version is used with a warning);
 * 3. `downloadUrl:`/CICACHE_DOWNLOAD_URL, checked against `sha256:`/CICACHE_SHA256 (required).
 *    The URL may hold `{arch}` (x86_64 or aarch64, from `uname -m` on the agent) and the
 *    checksum may be one per architecture, `x86_64=<sha256>,aarch64=<sha256>`. The file is kept
 *    per checksum in the agent's cache dir ($XDG_CACHE_HOME or ~/.cache/cicache/helper, else the
 *    workspace's temp dir), so an agent downloads each release once.
 * Otherwise error() says how to install it. The download URL may carry a token (a presigned
 * URL): it stays in a variable and never reaches the log. The helper's version (`--version`) is
 * compared with the library's (resources/io/cicache/helper-version.txt): a different major.minor
 * is a warning line, since the JSON contract between them may differ.
 */
class Helper implements Serializable {
    private static final long serialVersionUID = 1L

    static final String INSTALL_HELP =
        'Install it on the agent (resources/io/cicache/agent.Dockerfile shows how), set CICACHE_BIN to its path, ' +
        'or set CICACHE_DOWNLOAD_URL and CICACHE_SHA256 to download a pinned release.'

    static final List<String> ARCHES = ['x86_64', 'aarch64']

    static String locate(def steps, Map opts = [:]) {
        if (!steps.isUnix()) {
            steps.error('cicache: the steps run the helper with `sh` and need a Linux agent; this agent is not Unix-like.')
        }
        String expected = steps.libraryResource('io/cicache/helper-version.txt').trim()
        String bin = opts?.bin ?: steps.env.CICACHE_BIN
        if (bin) {
            String out = steps.sh(script: "#!/bin/sh\nb=${Shell.quote(bin)}\n" +
                'if test -f "$b" && test -x "$b"; then echo \'cicache-found: ok\'; "$b" --version 2>/dev/null || true; fi',
                returnStdout: true, label: 'cicache: check CICACHE_BIN')
            if (!out.contains('cicache-found: ok')) {
                steps.error("cicache helper: CICACHE_BIN is '${bin}', which is not an executable file on this agent. " + INSTALL_HELP)
            }
            warnOnVersion(steps, bin, versionIn(out), expected)
            return bin
        }
        String url = opts?.downloadUrl ?: steps.env.CICACHE_DOWNLOAD_URL
        String sha = opts?.sha256 ?: steps.env.CICACHE_SHA256
        String found = steps.sh(script: '#!/bin/sh\np=$(command -v cicache) || exit 0\necho "cicache-found: $p"\n"$p" --version 2>/dev/null || true',
            returnStdout: true, label: 'cicache: look for the helper on PATH')
        String onPath = pathIn(found)
        if (onPath) {
            String version = versionIn(found)
            if (!url || sameRelease(version, expected)) {
                warnOnVersion(steps, onPath, version, expected)
                return onPath
            }
            steps.echo("cicache: ${onPath} is version ${version ?: 'unknown'}, the library wants ${expected}: using the pinned download instead")
        }
        if (!url) {
            steps.error("cicache helper not found: CICACHE_BIN is not set, `cicache` is not on the agent's PATH and CICACHE_DOWNLOAD_URL is not set. " + INSTALL_HELP)
        }
        Map<String, String> shas = parseShas(sha)
        if (shas == null) {
            steps.error("cicache helper: CICACHE_DOWNLOAD_URL is set but CICACHE_SHA256 ${sha ? "('${sha}') is not a sha256 (64 hex digits) or x86_64=<sha256>,aarch64=<sha256>" : 'is not'}: " +
                'the download is only used when it matches a pinned checksum. Set CICACHE_SHA256 to the release\'s sha256.')
        }
        String tmp = steps.env.WORKSPACE_TMP ?: (steps.env.WORKSPACE ? "${steps.env.WORKSPACE}@tmp" : steps.pwd(tmp: true))
        String out = null
        steps.withEnv(["CICACHE_HELPER_URL=${url}"]) {
            out = steps.sh(script: downloadScript(tmp.toString(), shas), returnStdout: true, label: 'cicache: download the helper')
        }
        Map r = parseDownload(out)
        if (r.status == 'ok') {
            steps.echo("cicache: using the downloaded helper ${r.detail}")
            warnOnVersion(steps, r.detail, versionIn(out), expected)
            return r.detail
        }
        if (r.status == 'mismatch') {
            steps.error("cicache helper: the file downloaded from CICACHE_DOWNLOAD_URL has sha256 ${r.detail}. " +
                'It was deleted and not run. Check that the URL and the checksum name the same release.')
        }
        steps.error("cicache helper: the download from CICACHE_DOWNLOAD_URL failed (${r.detail ?: 'no result'}). " + INSTALL_HELP)
        return null
    }

    static void warnOnVersion(def steps, String bin, String version, String expected) {
        if (version == null) {
            steps.echo("cicache: warning: could not read the version of ${bin} (`--version`); the library expects ${expected}")
        } else if (!sameRelease(version, expected)) {
            steps.echo("cicache: warning: ${bin} is version ${version}, but this library expects ${expected}: " +
                'pin the library and the helper to the same release (a different JSON contract fails with exit code 2)')
        }
    }

    /** Same major.minor (0.x: same minor), the unit the JSON contract is versioned by. */
    @NonCPS
    static boolean sameRelease(String version, String expected) {
        if (version == null || expected == null) {
            return false
        }
        List<String> a = version.tokenize('.')
        List<String> b = expected.tokenize('.')
        return a.size() >= 2 && b.size() >= 2 && a[0] == b[0] && a[1] == b[1]
    }

    @NonCPS
    static String versionIn(String out) {
        def m = (out ?: '') =~ /(?m)^cicache (\d+\.\d+\.\d+\S*)/
        return m.find() ? m.group(1) : null
    }

    @NonCPS
    static String pathIn(String out) {
        for (String line : (out ?: '').readLines()) {
            if (line.startsWith('cicache-found: ') && line.length() > 15) {
                return line.substring(15).trim()
            }
        }
        return null
    }

    @NonCPS
    static String normalizeSha(String sha) {
        if (sha == null) {
            return null
        }
        String s = sha.trim().toLowerCase()
        return (s ==~ /^[0-9a-f]{64}$/) ? s : null
    }

    /**
     * CICACHE_SHA256 as [arch: sha256]: one sha256 (key '*': any architecture) or
     * 'x86_64=<sha256>,aarch64=<sha256>'. Null when it is neither.
     */
    @NonCPS
    static Map<String, String> parseShas(String sha) {
        if (sha == null || sha.trim().isEmpty()) {
            return null
        }
        String one = normalizeSha(sha)
        if (one != null) {
            return ['*': one]
        }
        Map<String, String> m = [:]
        for (String part : sha.split(',')) {
            int eq = part.indexOf('=')
            String arch = eq > 0 ? part.substring(0, eq).trim() : ''
            String s = eq > 0 ? normalizeSha(part.substring(eq + 1)) : null
            if (!ARCHES.contains(arch) || s == null) {
                return null
            }
            m[arch] = s
        }
        return m
    }

    /**
     * Picks the URL and checksum for the agent's architecture, downloads into a temp name in the
     * agent's helper cache (else TMP), checks the checksum, then renames: a bad file is never
     * executable at its final path. Prints 'cicache-download: ok PATH' and the helper's --version.
     */
    @NonCPS
    static String downloadScript(String tmp, Map<String, String> shas) {
        StringBuilder pick = new StringBuilder()
        for (Map.Entry<String, String> e : shas.entrySet()) {
            pick.append(e.key == '*' ? "want=${e.value}\n" : "[ \"\$arch\" = ${e.key} ] && want=${e.value}\n")
        }
        return """#!/bin/sh
arch=\$(uname -m)
case "\$arch" in amd64) arch=x86_64 ;; arm64) arch=aarch64 ;; esac
want=
${pick}[ -n "\$want" ] || { echo "cicache-download: failed CICACHE_SHA256 has no checksum for this agent's architecture (\$arch)"; exit 0; }
url=\$(printf '%s' "\$CICACHE_HELPER_URL" | sed "s/{arch}/\$arch/g")
base="\${XDG_CACHE_HOME:-\$HOME/.cache}/cicache/helper"
mkdir -p "\$base/\$want" 2>/dev/null && [ -w "\$base/\$want" ] || base=${Shell.quote(tmp + '/cicache-helper')}
dest="\$base/\$want/cicache"
sum() { if command -v sha256sum >/dev/null 2>&1; then sha256sum "\$1" | cut -d' ' -f1; else shasum -a 256 "\$1" | cut -d' ' -f1; fi; }
if [ -f "\$dest" ] && [ -x "\$dest" ] && [ "\$(sum "\$dest")" = "\$want" ]; then echo "cicache-download: ok \$dest"; "\$dest" --version 2>/dev/null; exit 0; fi
mkdir -p "\$(dirname "\$dest")" || { echo 'cicache-download: failed cannot create the directory'; exit 0; }
part="\$dest.part.\$\$"
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "\$part" "\$url" >&2 || { rm -f "\$part"; echo 'cicache-download: failed curl could not fetch the URL'; exit 0; }
elif command -v wget >/dev/null 2>&1; then
  wget -q -O "\$part" "\$url" >&2 || { rm -f "\$part"; echo 'cicache-download: failed wget could not fetch the URL'; exit 0; }
else
  echo 'cicache-download: failed neither curl nor wget is installed'; exit 0
fi
got=\$(sum "\$part")
if [ "\$got" != "\$want" ]; then rm -f "\$part"; echo "cicache-download: mismatch \$got, but CICACHE_SHA256 is \$want for \$arch"; exit 0; fi
chmod 755 "\$part" && mv -f "\$part" "\$dest" && echo "cicache-download: ok \$dest" && { "\$dest" --version 2>/dev/null || true; }
"""
    }

    @NonCPS
    static Map parseDownload(String out) {
        for (String line : (out ?: '').readLines().reverse()) {
            def m = line =~ /^cicache-download: (ok|mismatch|failed)\s*(.*)$/
            if (m.find()) {
                return [status: m.group(1), detail: m.group(2)]
            }
        }
        return [status: 'failed', detail: null]
    }
}
