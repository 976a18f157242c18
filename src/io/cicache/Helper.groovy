package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/**
 * Finds the cicache helper on the agent, in this order:
 * 1. `bin:` argument or CICACHE_BIN: must be an executable file;
 * 2. `cicache` on the agent's PATH;
 * 3. `downloadUrl:`/CICACHE_DOWNLOAD_URL, checked against `sha256:`/CICACHE_SHA256 (required),
 *    kept in the workspace's temp dir per checksum so one agent downloads each version once.
 * Otherwise error() says how to install it. The download URL may carry a token (a presigned
 * URL): it stays in a variable and never reaches the log.
 */
class Helper implements Serializable {
    private static final long serialVersionUID = 1L

    static final String INSTALL_HELP =
        'Install it on the agent (resources/io/cicache/agent.Dockerfile shows how), set CICACHE_BIN to its path, ' +
        'or set CICACHE_DOWNLOAD_URL and CICACHE_SHA256 to download a pinned release.'

    static String locate(def steps, Map opts = [:]) {
        if (!steps.isUnix()) {
            steps.error('cicache: the steps run the helper with `sh` and need a Linux agent; this agent is not Unix-like.')
        }
        String bin = opts?.bin ?: steps.env.CICACHE_BIN
        if (bin) {
            int rc = steps.sh(script: "#!/bin/sh\ntest -f ${Shell.quote(bin)} && test -x ${Shell.quote(bin)}",
                returnStatus: true, label: 'cicache: check CICACHE_BIN')
            if (rc != 0) {
                steps.error("cicache helper: CICACHE_BIN is '${bin}', which is not an executable file on this agent. " + INSTALL_HELP)
            }
            return bin
        }
        String onPath = steps.sh(script: "#!/bin/sh\ncommand -v cicache || true", returnStdout: true,
            label: 'cicache: look for the helper on PATH').trim()
        if (onPath) {
            return onPath
        }
        String url = opts?.downloadUrl ?: steps.env.CICACHE_DOWNLOAD_URL
        String sha = opts?.sha256 ?: steps.env.CICACHE_SHA256
        if (!url) {
            steps.error("cicache helper not found: CICACHE_BIN is not set, `cicache` is not on the agent's PATH and CICACHE_DOWNLOAD_URL is not set. " + INSTALL_HELP)
        }
        String want = normalizeSha(sha)
        if (want == null) {
            steps.error("cicache helper: CICACHE_DOWNLOAD_URL is set but CICACHE_SHA256 ${sha ? "('${sha}') is not a sha256 (64 hex digits)" : 'is not'}: " +
                'the download is only used when it matches a pinned checksum. Set CICACHE_SHA256 to the release\'s sha256.')
        }
        String tmp = steps.env.WORKSPACE_TMP ?: (steps.env.WORKSPACE ? "${steps.env.WORKSPACE}@tmp" : steps.pwd(tmp: true))
        String dest = "${tmp}/cicache-helper/${want}/cicache"
        String out = null
        steps.withEnv(["CICACHE_HELPER_URL=${url}"]) {
            out = steps.sh(script: downloadScript(dest, want), returnStdout: true, label: 'cicache: download the helper')
        }
        Map r = parseDownload(out)
        if (r.status == 'ok') {
            steps.echo("cicache: using the downloaded helper ${dest} (sha256 ${want})")
            return dest
        }
        if (r.status == 'mismatch') {
            steps.error("cicache helper: the file downloaded from CICACHE_DOWNLOAD_URL has sha256 ${r.detail}, but CICACHE_SHA256 is ${want}. " +
                'It was deleted and not run. Check that the URL and the checksum name the same release.')
        }
        steps.error("cicache helper: the download from CICACHE_DOWNLOAD_URL failed (${r.detail ?: 'no result'}). " + INSTALL_HELP)
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

    /** Downloads into a temp name, checks the checksum, then renames: a bad file is never executable at DEST. */
    @NonCPS
    static String downloadScript(String dest, String sha) {
        String d = Shell.quote(dest)
        return """#!/bin/sh
dest=${d}
want=${sha}
sum() { if command -v sha256sum >/dev/null 2>&1; then sha256sum "\$1" | cut -d' ' -f1; else shasum -a 256 "\$1" | cut -d' ' -f1; fi; }
if [ -f "\$dest" ] && [ -x "\$dest" ] && [ "\$(sum "\$dest")" = "\$want" ]; then echo 'cicache-download: ok'; exit 0; fi
mkdir -p "\$(dirname "\$dest")" || { echo 'cicache-download: failed cannot create the directory'; exit 0; }
part="\$dest.part.\$\$"
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "\$part" "\$CICACHE_HELPER_URL" >&2 || { rm -f "\$part"; echo 'cicache-download: failed curl could not fetch the URL'; exit 0; }
elif command -v wget >/dev/null 2>&1; then
  wget -q -O "\$part" "\$CICACHE_HELPER_URL" >&2 || { rm -f "\$part"; echo 'cicache-download: failed wget could not fetch the URL'; exit 0; }
else
  echo 'cicache-download: failed neither curl nor wget is installed'; exit 0
fi
got=\$(sum "\$part")
if [ "\$got" != "\$want" ]; then rm -f "\$part"; echo "cicache-download: mismatch \$got"; exit 0; fi
chmod 755 "\$part" && mv -f "\$part" "\$dest" && echo 'cicache-download: ok'
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
