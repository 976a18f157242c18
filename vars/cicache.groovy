// The low-level step: one method per helper command. See cicache.txt.
//   cicache.install()                       -> path of the helper on this agent
//   cicache.key('pip-{{ hashFiles "requirements*.txt" }}')   -> the rendered key
//   cicache.restore(key: ..., restoreKeys: [...], path: '.pip-cache')  -> Map (--json result)
//   cicache.save(key: ..., path: '.pip-cache')                         -> Map
//   cicache.prune(maxAge: '14d', ...) / cicache.report(logs: [...]) / cicache.doctor(context: '.')
//   cicache.run(['list'])  or  cicache(['list'])                       -> Map
import io.cicache.Args
import io.cicache.Cli
import io.cicache.Helper
import io.cicache.Scope

// Arguments every store command takes.
private Map storeSpec() {
    return [
        store        : [type: 'string', help: 'where caches are stored: DIR, dir:DIR, s3://BUCKET/PREFIX'],
        scope        : [type: 'string', help: 'the scope to save to and restore from first (default: pr-<CHANGE_ID> or BRANCH_NAME)'],
        defaultBranch: [type: 'string', nonEmpty: true],
        fallbackScopes: [type: 'list'],
        strict       : [type: 'boolean', default: false],
    ]
}

private Map checked(String step, Object args, Map spec) {
    Map r = Args.check(step, args, spec)
    if (r.error) {
        error(r.error)
    }
    return r.args
}

private List<String> globals(Map a) {
    Map sc = Scope.resolve(a.scope, env.CHANGE_ID, env.CHANGE_TARGET, env.BRANCH_NAME, env.GIT_BRANCH,
        Scope.defaultBranches(a.defaultBranch, env.CICACHE_DEFAULT_BRANCH, env.BRANCH_IS_PRIMARY, env.BRANCH_NAME),
        a.fallbackScopes)
    return Cli.globalArgs(a.store, sc, a.strict)
}

private Map runChecked(String what, String bin, List<String> args, Map opts = [:], List<Integer> okCodes = [0]) {
    Map r = Cli.exec(this, bin, args, opts)
    if (!okCodes.contains(r.exitCode) || (opts.json != false && r.result == null)) {
        error(Cli.failure(what, r))
    }
    return r
}

/** The helper's path on this agent: bin:, CICACHE_BIN, PATH, or a pinned download. */
def install(Object args = null) {
    Map a = checked('cicache.install', args, [
        bin        : [type: 'string', nonEmpty: true, help: 'path of the helper (default: CICACHE_BIN)'],
        downloadUrl: [type: 'string', nonEmpty: true, help: 'URL of the helper binary (default: CICACHE_DOWNLOAD_URL)'],
        sha256     : [type: 'string', nonEmpty: true, help: 'sha256 of that binary, or x86_64=<sha256>,aarch64=<sha256> (default: CICACHE_SHA256)'],
    ])
    String bin = Helper.locate(this, a)
    // Given here, they hold for the rest of the build (every later step finds the helper the same way).
    if (a.bin) {
        env.CICACHE_BIN = a.bin
    }
    if (a.downloadUrl) {
        env.CICACHE_DOWNLOAD_URL = a.downloadUrl
        env.CICACHE_SHA256 = a.sha256
    }
    return bin
}

/** Renders a key template with `cicache key`; returns the key. */
def key(Object template) {
    Map a = template instanceof Map ? checked('cicache.key', template, [
        template: [type: 'string', required: true, nonEmpty: true, help: "a key template, e.g. 'pip-{{ hashFiles \"requirements*.txt\" }}'"],
        base    : [type: 'string', help: 'directory that hashFiles globs are relative to (default: the current directory)'],
    ]) : checked('cicache.key', [template: template], [template: [type: 'string', required: true, nonEmpty: true]])
    String bin = install()
    List<String> cmd = ['key']
    if (a.base) {
        cmd.addAll(['--base', a.base])
    }
    cmd.addAll(['--', a.template])
    Map r = runChecked('cicache key', bin, cmd, [label: 'cicache key'])
    if (!(r.result.key instanceof CharSequence) || r.result.key.toString().isEmpty()) {
        error("cicache key: the helper's JSON result has no \"key\" field: ${r.stdout}")
    }
    return r.result.key.toString()
}

/** Restores a cache dir. Returns the --json result; a miss is not an error unless failOnMiss. */
def restore(Object args = null) {
    Map a = checked('cicache.restore', args, storeSpec() + [
        key        : [type: 'string', required: true, nonEmpty: true, help: "the key or key template, e.g. 'pip-{{ hashFiles \"requirements*.txt\" }}'"],
        restoreKeys: [type: 'list', default: []],
        path       : [type: 'string', default: '.pip-cache', nonEmpty: true],
        failOnMiss : [type: 'boolean', default: false],
        lookupOnly : [type: 'boolean', default: false],
    ])
    String bin = install()
    List<String> cmd = globals(a) + ['restore', '--key', a.key]
    for (String p : a.restoreKeys) {
        cmd.addAll(['--restore-key', p])
    }
    cmd.addAll(['--path', a.path])
    if (a.failOnMiss) {
        cmd.add('--fail-on-miss')
    }
    if (a.lookupOnly) {
        cmd.add('--lookup-only')
    }
    Map r = Cli.exec(this, bin, cmd, [label: 'cicache restore',
        unset: ['CICACHE_KEY', 'CICACHE_RESTORE_KEYS', 'CICACHE_PATH', 'CICACHE_FAIL_ON_MISS', 'CICACHE_LOOKUP_ONLY']])
    if (r.exitCode == 3) {
        error("cicache.restore: no cache entry matches key '${a.key}'${a.restoreKeys ? ' or restore keys ' + a.restoreKeys : ''} (failOnMiss: true)")
    }
    if (r.exitCode != 0 || r.result == null) {
        error(Cli.failure('cicache restore', r))
    }
    return r.result
}

/** Saves a cache dir under a key (a no-op when the key exists, unless update). */
def save(Object args = null) {
    Map a = checked('cicache.save', args, storeSpec() + [
        key      : [type: 'string', required: true, nonEmpty: true, help: "the key or key template, e.g. 'pip-{{ hashFiles \"requirements*.txt\" }}'"],
        path     : [type: 'string', default: '.pip-cache', nonEmpty: true],
        update   : [type: 'boolean', default: false],
        ifChanged: [type: 'boolean', default: false],
        exclude  : [type: 'list', default: []],
    ])
    String bin = install()
    List<String> cmd = globals(a) + ['save', '--key', a.key, '--path', a.path]
    if (a.update) {
        cmd.add('--update')
    }
    if (a.ifChanged) {
        cmd.add('--if-changed')
    }
    for (String g : a.exclude) {
        cmd.addAll(['--exclude', g])
    }
    return runChecked('cicache save', bin, cmd, [label: 'cicache save',
        unset: ['CICACHE_KEY', 'CICACHE_PATH', 'CICACHE_UPDATE', 'CICACHE_IF_CHANGED', 'CICACHE_EXCLUDE']]).result
}

/** Evicts store entries: maxAge, maxUnused, maxSize, keepLast; dryRun only reports. */
def prune(Object args = null) {
    Map a = checked('cicache.prune', args, [
        store    : [type: 'string'],
        maxAge   : [type: 'duration'],
        maxUnused: [type: 'duration'],
        maxSize  : [type: 'size'],
        keepLast : [type: 'integer'],
        dryRun   : [type: 'boolean', default: false],
        strict   : [type: 'boolean', default: false],
    ])
    String bin = install()
    List<String> cmd = Cli.globalArgs(a.store, null, a.strict) + ['prune']
    if (a.maxAge) {
        cmd.addAll(['--max-age', a.maxAge])
    }
    if (a.maxUnused) {
        cmd.addAll(['--max-unused', a.maxUnused])
    }
    if (a.maxSize) {
        cmd.addAll(['--max-size', a.maxSize])
    }
    if (a.keepLast != null) {
        cmd.addAll(['--keep-last', a.keepLast.toString()])
    }
    if (a.dryRun) {
        cmd.add('--dry-run')
    }
    return runChecked('cicache prune', bin, cmd, [label: 'cicache prune']).result
}

/** Summarizes build logs. format 'json' returns a Map; 'text' and 'markdown' return the text (also written to output:). */
def report(Object args = null) {
    Map a = checked('cicache.report', args, [
        logs  : [type: 'list', required: true, help: "the build logs to read, e.g. logs: ['cicache-build.log']"],
        format: [type: 'string', values: ['json', 'text', 'markdown'], default: 'json'],
        output: [type: 'string', nonEmpty: true, help: 'a file to write the text or Markdown report to'],
    ])
    if (a.logs.isEmpty()) {
        error("cicache.report: argument 'logs' must name at least one log file")
    }
    String bin = install()
    if (a.format == 'json') {
        // The global --json is the JSON format (one document, like every command).
        Map r = runChecked('cicache report', bin, ['report', '--'] + a.logs, [label: 'cicache report'])
        if (a.output) {
            writeFile(file: a.output, text: r.stdout)
        }
        return r.result
    }
    Map r = runChecked('cicache report', bin, ['report', '--format', a.format, '--'] + a.logs, [json: false, label: 'cicache report'])
    if (a.output) {
        writeFile(file: a.output, text: r.stdout)
    }
    return r.stdout
}

/** Checks docker, BuildKit, the Dockerfile (and whether it copies cacheDir from context), the store and the registry. */
def doctor(Object args = null) {
    Map a = checked('cicache.doctor', args, [
        dockerfile: [type: 'string', nonEmpty: true],
        context   : [type: 'string', nonEmpty: true],
        cacheDir  : [type: 'string', nonEmpty: true],
        store     : [type: 'string'],
        failOnProblem: [type: 'boolean', default: false],
    ])
    String bin = install()
    List<String> cmd = Cli.globalArgs(a.store, null, false) + ['doctor']
    if (a.dockerfile) {
        cmd.addAll(['--dockerfile', a.dockerfile])
    }
    if (a.context) {
        cmd.addAll(['--context', Cli.pathArg(a.context)])
    }
    if (a.cacheDir) {
        cmd.addAll(['--cache-dir', Cli.pathArg(a.cacheDir)])
    }
    Map r = Cli.exec(this, bin, cmd, [label: 'cicache doctor'])
    if (r.result == null || (a.failOnProblem && r.exitCode != 0)) {
        error(Cli.failure('cicache doctor', r))
    }
    return r.result
}

/**
 * Any helper command: run(['list']) or run(args: ['registry', 'status', '--image', repo], returnStatus: true).
 * Returns the --json result; with returnStatus the Map [exitCode:, result:] and no error on failure.
 */
def run(Object args) {
    Map a = args instanceof List ? checked('cicache.run', [args: args], [args: [type: 'list', required: true]]) :
        checked('cicache.run', args, [
            args        : [type: 'list', required: true, help: "the command and its arguments, e.g. args: ['list']"],
            returnStatus: [type: 'boolean', default: false],
        ])
    if (a.args.isEmpty()) {
        error("cicache.run: argument 'args' must name a command, e.g. cicache.run(['list'])")
    }
    String bin = install()
    Map r = Cli.exec(this, bin, a.args, [label: "cicache ${a.args[0]}".toString()])
    if (a.returnStatus) {
        return [exitCode: r.exitCode, result: r.result]
    }
    if (r.exitCode != 0 || r.result == null) {
        error(Cli.failure("cicache ${a.args[0]}", r))
    }
    return r.result
}

def call(List args) {
    return run(args)
}
