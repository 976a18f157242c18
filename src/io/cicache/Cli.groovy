package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/**
 * Runs one helper command through `sh` and reads its `--json` result.
 *
 * The script always ends with a marker line carrying the helper's exit code, so `sh` never
 * throws and the step can tell a miss (3) from a failure (1) and still read the JSON document
 * the helper printed on failure ({"ok": false, "error": ...}). The helper's log lines go to
 * stderr, straight into the build log. Scripts start with `#!/bin/sh` so Jenkins does not run
 * them under `sh -xe` (no command tracing, no secrets in the log).
 */
class Cli implements Serializable {
    private static final long serialVersionUID = 1L

    static final String EXIT_MARKER = '__cicache_exit_code='

    /**
     * CICACHE_* variables the steps decide themselves: unset in every script, so an agent's or
     * a Jenkinsfile's environment cannot change what a step asked for (scope, strict).
     */
    static final List<String> STEP_ENV = ['CICACHE_SCOPE', 'CICACHE_FALLBACK_SCOPES', 'CICACHE_STRICT']

    /** Global options: --store, --scope, --fallback-scope..., --strict. */
    @NonCPS
    static List<String> globalArgs(String store, Map scope, boolean strict) {
        List<String> g = []
        if (store) {
            g.addAll(['--store', store])
        }
        if (scope?.scope) {
            g.addAll(['--scope', scope.scope.toString()])
        }
        for (Object f : (scope?.fallbacks ?: [])) {
            g.addAll(['--fallback-scope', f.toString()])
        }
        if (strict) {
            g.add('--strict')
        }
        return g
    }

    /** The command line as the log shows it (no marker, no secrets: those stay in variables). */
    @NonCPS
    static String display(String bin, List<String> args, Map opts) {
        String cmd = Shell.join([bin] + ((opts?.json == false) ? [] : ['--json']) + args)
        if (opts?.stdinEnv) {
            cmd = "printf '%s' \"\$${opts.stdinEnv}\" | " + cmd
        }
        return cmd
    }

    /** opts.unset: further variables to unset before the command (the build's CICACHE_* options). */
    @NonCPS
    static String shellScript(String bin, List<String> args, Map opts) {
        List<String> unset = new ArrayList<String>(STEP_ENV)
        for (Object v : (opts?.unset ?: [])) {
            unset.add(v.toString())
        }
        return "#!/bin/sh\nunset ${unset.join(' ')}\n" + display(bin, args, opts) + "\n" +
            "rc=\$?\nprintf '\\n%s%s\\n' '${EXIT_MARKER}' \"\$rc\"\n"
    }

    /** A path argument that cannot be read as a flag: '--push' becomes './--push' (the same path). */
    @NonCPS
    static String pathArg(String path) {
        return path.startsWith('-') ? './' + path : path
    }

    /** Splits what `sh` returned into [exitCode:, result: Map or null, stdout:, problem: String or null]. */
    @NonCPS
    static Map parse(String out, boolean json) {
        String text = out ?: ''
        int i = text.lastIndexOf(EXIT_MARKER)
        if (i < 0) {
            return [exitCode: -1, result: null, stdout: text,
                    problem: 'the shell ended before the helper returned (killed, or /bin/sh missing?)']
        }
        String body = text.substring(0, i)
        String codeText = text.substring(i + EXIT_MARKER.length()).trim()
        int code = codeText.isInteger() ? codeText.toInteger() : -1
        if (body.endsWith('\n')) {
            body = body.substring(0, body.length() - 1)
        }
        if (!json) {
            return [exitCode: code, result: null, stdout: body, problem: null]
        }
        String trimmed = body.trim()
        if (trimmed.isEmpty()) {
            return [exitCode: code, result: null, stdout: body, problem: 'the helper printed no JSON result']
        }
        // The document is the last one that starts at the beginning of a line (pretty-printed
        // JSON has its nested braces indented); anything printed before it is ignored.
        List<Integer> starts = []
        if (trimmed.startsWith('{')) {
            starts.add(0)
        }
        int at = trimmed.indexOf('\n{')
        while (at >= 0) {
            starts.add(at + 1)
            at = trimmed.indexOf('\n{', at + 1)
        }
        if (starts.isEmpty()) {
            return [exitCode: code, result: null, stdout: body,
                    problem: "the helper printed no JSON result (stdout began: ${abbrev(trimmed)})"]
        }
        String firstError = null
        for (int k = starts.size() - 1; k >= 0; k--) {
            try {
                Object doc = Json.parse(trimmed.substring(starts[k]))
                if (doc instanceof Map) {
                    return [exitCode: code, result: doc, stdout: body, problem: null]
                }
            } catch (Exception e) {
                if (firstError == null) {
                    firstError = e.message?.readLines()?.getAt(0)
                }
            }
        }
        return [exitCode: code, result: null, stdout: body,
                problem: "the helper printed invalid JSON (${firstError ?: 'not an object'}): ${abbrev(trimmed)}"]
    }

    /** A one-line reason for a failed command, for error(). */
    @NonCPS
    static String failure(String what, Map r) {
        String why = null
        if (r.result instanceof Map && r.result.error) {
            why = r.result.error.toString()
        } else if (r.problem) {
            why = r.problem
        }
        String code = r.exitCode == 2 ? 'exit code 2: bad usage; the library and the helper may be different versions' :
            "exit code ${r.exitCode}"
        return "${what} failed (${code})${why ? ': ' + why : '; see the cicache lines above'}"
    }

    @NonCPS
    private static String abbrev(String s) {
        String one = s.replaceAll(/\s+/, ' ')
        return one.length() > 200 ? one.substring(0, 200) + '...' : one
    }

    /**
     * Runs `<bin> --json ARGS` (or without --json when opts.json == false) on the agent.
     * opts.stdinEnv: the name of a variable whose value is piped to the helper's stdin;
     * opts.label: the label of the `sh` step.
     */
    static Map exec(def steps, String bin, List<String> args, Map opts = [:]) {
        steps.echo("cicache: ${display(bin, args, opts)}")
        String out = steps.sh(script: shellScript(bin, args, opts), returnStdout: true,
            label: (opts?.label ?: 'cicache').toString())
        return parse(out, opts?.json != false)
    }
}
