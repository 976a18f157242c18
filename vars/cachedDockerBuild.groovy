// A cached `docker build` of a Python project: restore the pip cache, inject it into the
// Dockerfile's BuildKit cache mounts, build with the registry layer cache, push, extract and
// save the cache, report. One `cicache build` call; see cachedDockerBuild.txt.
import com.cloudbees.groovy.cps.NonCPS
import io.cicache.Args
import io.cicache.Aws
import io.cicache.CachePlugin
import io.cicache.Cli
import io.cicache.DockerConfig
import io.cicache.EnvRef
import io.cicache.Scope

private Map spec() {
    return [
        image                : [type: 'string', required: true, nonEmpty: true,
                                help: "the image repository, e.g. image: '123456789012.dkr.ecr.eu-north-1.amazonaws.com/app'"],
        tags                 : [type: 'list', default: []],
        dockerfile           : [type: 'string', nonEmpty: true],
        context              : [type: 'string', default: '.', nonEmpty: true],
        buildArgs            : [type: 'map', default: [:]],
        target               : [type: 'string', nonEmpty: true],
        dockerArgs           : [type: 'list', default: []],
        cacheDir             : [type: 'string', default: '.pip-cache', nonEmpty: true],
        cacheKey             : [type: 'string', nonEmpty: true],
        restoreKeys          : [type: 'list', default: []],
        restoreCache         : [type: 'boolean', default: true],
        saveCache            : [type: 'boolean', default: true],
        store                : [type: 'string'],
        scope                : [type: 'string'],
        defaultBranch        : [type: 'string', nonEmpty: true],
        cacheBackend         : [type: 'string', values: ['auto', 'plugin', 'helper', 'none'], default: 'auto'],
        cachePlugin          : [type: 'string', values: CachePlugin.CHOICES],
        cacheValidityFile    : [type: 'string'],
        maxCacheSize         : [type: 'size'],
        registryCache        : [type: 'boolean'],
        compression          : [type: 'string', values: ['gzip', 'zstd', 'estargz']],
        compressionLevel     : [type: 'integer'],
        push                 : [type: 'boolean', default: false],
        rebuild              : [type: 'boolean', default: false],
        registryLogin        : [type: 'boolean', default: false],
        registryCredentialsId: [type: 'string', nonEmpty: true],
        region               : [type: 'string', nonEmpty: true],
        awsCredentialsId     : [type: 'string', nonEmpty: true],
        strict               : [type: 'boolean', default: false],
        cacheProblem         : [type: 'string', values: ['warn', 'unstable', 'fail']],
        logFile              : [type: 'string', nonEmpty: true],
        reportFile           : [type: 'string', nonEmpty: true],
        archiveReport        : [type: 'boolean', default: false],
        htmlReport           : [type: 'boolean', default: true],
        htmlReportFile       : [type: 'string', nonEmpty: true],
        setDescription       : [type: 'boolean', default: true],
        baseDockerfile       : [type: 'string', nonEmpty: true,
                                help: "the base image's Dockerfile, e.g. baseDockerfile: 'Dockerfile.base'"],
        baseInputs           : [type: 'list', default: []],
        baseBuildArgs        : [type: 'map', default: [:]],
    ]
}

// The CICACHE_* variables of the build options this step decides (see buildArgs): unset in the
// build's script, so an agent's environment (CICACHE_PUSH=true) cannot override push: false.
// What the step leaves open (e.g. no dockerfile:) then comes from cicache.yml or the helper's
// defaults. CICACHE_STORE and CICACHE_COMPRESSION stay: the store and the layer compression (what
// the registries and nodes read) are the agent's to choose unless store: / compression: is given.
@NonCPS
private List<String> buildEnv() {
    return ['CICACHE_IMAGE', 'CICACHE_TAGS', 'CICACHE_DOCKERFILE', 'CICACHE_BUILD_ARGS', 'CICACHE_TARGET',
            'CICACHE_CACHE_DIR', 'CICACHE_KEY', 'CICACHE_RESTORE_KEYS', 'CICACHE_REGISTRY_CACHE',
            'CICACHE_NO_REGISTRY_CACHE', 'CICACHE_PUSH', 'CICACHE_NO_RESTORE', 'CICACHE_NO_SAVE', 'CICACHE_REBUILD',
            'CICACHE_BUILD_LOG', 'CICACHE_REPORT_HTML', 'CICACHE_BASE_DOCKERFILE', 'CICACHE_BASE_INPUTS',
            'CICACHE_BASE_BUILD_ARGS']
}

// What the S3 Pipeline Cache plugin stores under when no cacheKey is given: the helper's own defaults.
private String defaultPluginKey() {
    return 'pip-{{ os }}-{{ arch }}-{{ hashFiles "**/requirements*.txt" }}'
}

private String defaultPluginRestoreKey() {
    return 'pip-{{ os }}-{{ arch }}-'
}

def call(Object args = null) {
    Map r = Args.check('cachedDockerBuild', args, spec())
    if (r.error) {
        error(r.error)
    }
    Map a = r.args
    // strict: true is the older spelling of cacheProblem: 'fail'.
    a.cacheProblem = a.cacheProblem ?: (a.strict ? 'fail' : 'warn')
    a.strict = a.cacheProblem == 'fail'
    // Per build and per image, so parallel builds in one workspace never share a log or report.
    String name = fileSlug(a.image, a.target, env.BUILD_NUMBER)
    a.logFile = a.logFile ?: ".cicache/${name}.log".toString()
    a.reportFile = a.reportFile ?: ".cicache/${name}-report.md".toString()
    a.htmlReportFile = a.htmlReportFile ?: ".cicache/${name}-report.html".toString()
    return Aws.with(this, a.region, a.awsCredentialsId) {
        runBuild(a)
    }
}

@NonCPS
private String fileSlug(String image, String target, String buildNumber) {
    String repo = image.replaceFirst(/@.*$/, '').replaceFirst(/:[^:\/]+$/, '')
    String last = repo.substring(repo.lastIndexOf('/') + 1)
    String slug = (last + (target ? '-' + target : '')).replaceAll(/[^A-Za-z0-9._-]+/, '_')
    return "${slug}-${buildNumber ?: 'local'}".toString()
}

private Map runBuild(Map a) {
    String bin = cicache.install()
    Map sc = Scope.resolve(a.scope, env.CHANGE_ID, env.CHANGE_TARGET, env.BRANCH_NAME, env.GIT_BRANCH,
        Scope.defaultBranches(a.defaultBranch, env.CICACHE_DEFAULT_BRANCH, env.BRANCH_IS_PRIMARY, env.BRANCH_NAME))
    a.seedBranch = sc.defaultBranch

    // Which backend keeps the cache dir between builds. A plugin only when one is named (or
    // 'detect' asked for): the lookup needs a trusted library, and in a sandboxed one each
    // refused lookup would queue a script approval.
    String plugin = null
    String wanted = a.cachePlugin ?: env.CICACHE_CACHE_PLUGIN
    if (wanted && !CachePlugin.CHOICES.contains(wanted)) {
        error("cachedDockerBuild: CICACHE_CACHE_PLUGIN is '${wanted}'; it must be one of ${Args.quoted(CachePlugin.CHOICES)}")
    }
    if (a.cacheBackend == 'plugin' && !wanted) {
        wanted = 'detect'
    }
    if ((a.cacheBackend == 'auto' || a.cacheBackend == 'plugin') && wanted) {
        String detected = wanted == 'detect' ? CachePlugin.detect() : CachePlugin.canonical(wanted)
        if (detected == CachePlugin.S3 && (!a.restoreCache || !a.saveCache)) {
            // The S3 plugin's step always restores and saves: it cannot honour either switch.
            String why = "the Pipeline Cache plugin (jenkins-pipeline-cache) cannot skip its restore or save, and restoreCache or saveCache is false"
            if (a.cacheBackend == 'plugin') {
                error("cachedDockerBuild: cacheBackend 'plugin': ${why}. Use cacheBackend: 'helper', or the Job Cacher plugin.")
            }
            echo("cicache: cacheBackend 'auto': ${why}; keeping the cache dir in the cicache store instead.")
        } else if (CachePlugin.usable(detected)) {
            plugin = detected
        } else if (a.cacheBackend == 'plugin') {
            error(CachePlugin.missingMessage('cachedDockerBuild', detected))
        } else {
            echo(CachePlugin.fallbackLine(detected))
        }
    }
    String backend = plugin ? "plugin:${plugin}".toString() : (a.cacheBackend == 'none' ? 'none' : 'helper')
    boolean helperStore = backend == 'helper'

    List<String> cmd = Cli.globalArgs(helperStore ? a.store : null, sc, a.strict) + buildArgs(a, helperStore)
    // A workspace outlives builds: never report (or describe the build with) an old report.
    // Writing both files also makes their directories (.cicache/), which the helper does not.
    writeFile(file: a.reportFile, text: '')
    writeFile(file: a.logFile, text: '')
    if (a.htmlReport) {
        writeFile(file: a.htmlReportFile, text: '')
    }
    Map out = null
    // Registry logins go into a private DOCKER_CONFIG that is deleted when the step ends.
    String dockerConfig = (a.registryCredentialsId || a.registryLogin) ? DockerConfig.create(this) : null
    try {
        withEnv(dockerConfig ? ["DOCKER_CONFIG=${dockerConfig}".toString()] : []) {
            out = loginAndBuild(bin, a, plugin, cmd)
        }
    } finally {
        if (dockerConfig) {
            DockerConfig.remove(this, dockerConfig)
        }
    }

    Map result = out.result instanceof Map ? out.result : [:]
    // The base image: reused or rebuilt, and why (which input changed).
    String baseLine = baseSummary(result)
    if (baseLine) {
        echo("cicache: ${baseLine}")
    }
    // The documented shape is result.steps / result.verdict; a helper that nests its report
    // (result.report.steps) gets them lifted, so Jenkinsfiles read one shape.
    if (!(result.steps instanceof Map) && result.report instanceof Map && result.report.steps instanceof Map) {
        result.steps = result.report.steps
    }
    if (result.verdict == null && result.report instanceof Map && result.report.verdict instanceof CharSequence) {
        result.verdict = result.report.verdict.toString()
    }
    String verdict = result.verdict instanceof CharSequence ? result.verdict.toString() : null
    String markdown = readFile(a.reportFile)
    if (out.exitCode == 0 && !markdown.trim() && fileExists(a.logFile)) {
        // The helper wrote no report (its report phase failed, which is only a warning): make it from the log.
        Map rep = Cli.exec(this, bin, ['report', '--format', 'markdown', '--', a.logFile], [json: false, label: 'cicache report'])
        if (rep.exitCode == 0 && rep.stdout) {
            markdown = rep.stdout
            writeFile(file: a.reportFile, text: markdown)
        }
    }
    if (!verdict && markdown.trim()) {
        verdict = firstLine(markdown)
    }
    if (a.setDescription && verdict) {
        String old = currentBuild.description
        currentBuild.description = old ? "${old}\n${verdict}".toString() : verdict
    }
    if (a.setDescription && baseLine) {
        String old = currentBuild.description
        currentBuild.description = old ? "${old}\n${baseLine}".toString() : baseLine
    }
    if (a.archiveReport && markdown.trim()) {
        archiveArtifacts(artifacts: a.reportFile, allowEmptyArchive: true)
    }
    if (a.htmlReport && readFile(a.htmlReportFile).trim()) {
        publishHtmlReport(a)
        result.htmlReportFile = a.htmlReportFile
    }
    if (out.exitCode != 0 || out.result == null) {
        error(Cli.failure("cachedDockerBuild: cicache build of ${a.image}", out))
    }
    List<String> problems = warnings(result)
    if (a.cacheProblem == 'unstable' && problems) {
        unstable("cicache: the build of ${a.image} passed with cache problems: ${problems.join('; ')}".toString())
    }
    result.cacheBackend = backend
    result.scope = sc.scope
    result.reportFile = a.reportFile
    result.logFile = a.logFile
    return result
}

// The HTML report (cicache build --report-html) on the build page: a "Cache report" link with the
// HTML Publisher plugin; without it, archived and linked from the build description.
private void publishHtmlReport(Map a) {
    String file = a.htmlReportFile
    int slash = file.lastIndexOf('/')
    String dir = slash >= 0 ? file.substring(0, slash) : '.'
    String name = file.substring(slash + 1)
    try {
        publishHTML([reportDir: dir, reportFiles: name, reportName: 'Cache report',
                     keepAll: true, allowMissing: true, alwaysLinkToLastBuild: false])
    } catch (NoSuchMethodError | MissingMethodException ignored) {
        archiveArtifacts(artifacts: file, allowEmptyArchive: true)
        if (a.setDescription && env.BUILD_URL) {
            String link = "cache report: ${env.BUILD_URL}artifact/${file}".toString()
            String old = currentBuild.description
            currentBuild.description = old ? "${old}\n${link}".toString() : link
        }
    }
}

// The login (if any) and `cicache build`, inside the cache plugin's block when one keeps the cache dir.
private Map loginAndBuild(String bin, Map a, String plugin, List<String> cmd) {
    if (a.registryCredentialsId) {
        withCredentials([usernamePassword(credentialsId: a.registryCredentialsId,
            usernameVariable: 'CICACHE_REGISTRY_USERNAME', passwordVariable: 'CICACHE_REGISTRY_PASSWORD')]) {
            login(bin, a, true)
        }
    } else if (a.registryLogin) {
        login(bin, a, false)
    }

    Map out = null
    if (plugin == CachePlugin.JOBCACHER && a.cacheValidityFile) {
        // The user's own validity file: Job Cacher restores only while it is unchanged.
        Map cacheArgs = [path: a.cacheDir, compressionMethod: 'TAR_ZSTD', cacheValidityDecidingFile: a.cacheValidityFile]
        cache(jobCacherArgs(a, [arbitraryFileCache(cacheArgs)], !a.restoreCache, !a.saveCache)) {
            out = Cli.exec(this, bin, cmd, [label: 'cicache build', unset: buildEnv()])
        }
    } else if (plugin == CachePlugin.JOBCACHER) {
        out = jobCacherKeyed(bin, a, cmd)
    } else if (plugin == CachePlugin.S3) {
        // The plugin knows nothing of key templates: render them with the helper.
        String key = cicache.key(a.cacheKey ?: defaultPluginKey())
        List<String> restoreKeys = []
        for (String p : (a.restoreKeys ?: (a.cacheKey ? [] : [defaultPluginRestoreKey()]))) {
            restoreKeys.add(p.contains('{{') ? cicache.key(p) : p)
        }
        cache(path: a.cacheDir, key: key, restoreKeys: restoreKeys) {
            out = Cli.exec(this, bin, cmd, [label: 'cicache build', unset: buildEnv()])
        }
    } else {
        out = Cli.exec(this, bin, cmd, [label: 'cicache build', unset: buildEnv()])
    }
    return out
}

// Job Cacher with a cache key: Job Cacher itself restores a cache only while its validity file
// is unchanged, so a requirements change would start from a cold cache. Instead: restore the
// last cache always (no validity file, no save), then, when the rendered key differs from the
// key the restored cache was saved under (a marker in it), save with a validity file holding the
// new key: the stored cache's validity (the old key) differs, so Job Cacher skips its restore
// and saves. An unchanged key saves nothing.
private Map jobCacherKeyed(String bin, Map a, List<String> cmd) {
    String key = cicache.key(a.cacheKey ?: defaultPluginKey())
    String name = jobCacherName(a.cacheDir)
    String marker = "${a.cacheDir}/.cicache-key".toString()
    String keyFile = ".cicache/${name}.key".toString()
    String previous = null
    Map out = null
    cache(jobCacherArgs(a, [arbitraryFileCache(path: a.cacheDir, cacheName: name, compressionMethod: 'TAR_ZSTD')],
                        !a.restoreCache, true)) {
        // Read before the build: its extract phase may rewrite the cache dir.
        previous = fileExists(marker) ? readFile(marker).trim() : null
        out = Cli.exec(this, bin, cmd, [label: 'cicache build', unset: buildEnv()])
    }
    if (!a.saveCache || out.exitCode != 0) {
        return out
    }
    if (previous == key) {
        echo("cicache: Job Cacher: the cache of key ${key} is unchanged; not saving it again.")
        return out
    }
    echo("cicache: Job Cacher: saving the cache under key ${key}${previous ? " (restored: ${previous})" : ''}.")
    writeFile(file: marker, text: key)
    writeFile(file: keyFile, text: key)
    cache(jobCacherArgs(a, [arbitraryFileCache(path: a.cacheDir, cacheName: name, compressionMethod: 'TAR_ZSTD',
                                               cacheValidityDecidingFile: keyFile)], false, false)) {
        // Empty: this block only saves (the stored validity, the old key, differs from keyFile).
    }
    return out
}

// The cache step's own arguments; skipRestore/skipSave only when set (Job Cacher added each in
// a later release, and an older one rejects an argument it does not know).
@NonCPS
private Map jobCacherArgs(Map a, List caches, boolean skipRestore, boolean skipSave) {
    Map m = [caches: caches]
    if (a.seedBranch) {
        m.defaultBranch = a.seedBranch
    }
    if (a.maxCacheSize) {
        m.maxCacheSize = Args.megabytes(a.maxCacheSize)
    }
    if (skipRestore) {
        m.skipRestore = true
    }
    if (skipSave) {
        m.skipSave = true
    }
    return m
}

// Job Cacher's cacheName for a cache dir: one per dir, so two cache dirs never share an entry.
@NonCPS
private String jobCacherName(String cacheDir) {
    return 'cicache-' + cacheDir.replaceAll(/[^A-Za-z0-9._-]+/, '_').replaceAll(/^[._]+/, '')
}

private void login(String bin, Map a, boolean withPassword) {
    List cmd = ['registry', 'login', '--image', a.image]
    Map opts = [label: 'cicache registry login']
    if (withPassword) {
        // The secret stays in the variable: the script text names it, the helper reads stdin.
        cmd.addAll(['--username', new EnvRef('CICACHE_REGISTRY_USERNAME'), '--password-stdin'])
        opts.stdinEnv = 'CICACHE_REGISTRY_PASSWORD'
    }
    Map r = Cli.exec(this, bin, cmd, opts)
    if (r.exitCode != 0) {
        error(Cli.failure("cachedDockerBuild: cicache registry login for ${a.image}", r))
    }
}

@NonCPS
private String baseSummary(Map result) {
    if (!(result.base instanceof Map)) {
        return null
    }
    Object s = result.base.summary
    return s instanceof CharSequence ? s.toString() : null
}

// The helper's cache warnings: a list of messages (or, in older helpers, a count).
@NonCPS
private List<String> warnings(Map result) {
    Object w = result.warnings
    if (w instanceof List) {
        return w.collect { it.toString() }
    }
    if (w instanceof Number && ((Number) w).intValue() > 0) {
        return ["${w} warning(s), see the log".toString()]
    }
    return []
}

@NonCPS
private String firstLine(String text) {
    for (String l : (text ?: '').readLines()) {
        // Markdown decoration off: '# title', '**bold**'.
        String t = l.replaceFirst(/^#+\s*/, '').trim().replaceAll(/^[*_]+|[*_]+$/, '').trim()
        if (t) {
            return t
        }
    }
    return null
}

@NonCPS
private List<String> buildArgs(Map a, boolean helperStore) {
    List<String> c = ['build', '--image', a.image]
    for (String t : a.tags) {
        c.addAll(['--tag', t])
    }
    if (a.dockerfile) {
        c.addAll(['-f', a.dockerfile])
    }
    for (Map.Entry e : a.buildArgs.entrySet()) {
        c.addAll(['--build-arg', "${e.key}=${e.value}".toString()])
    }
    if (a.target) {
        c.addAll(['--target', a.target])
    }
    if (a.baseDockerfile) {
        c.addAll(['--base-dockerfile', a.baseDockerfile])
        for (String g : a.baseInputs) {
            c.addAll(['--base-input', g])
        }
        for (Map.Entry e : a.baseBuildArgs.entrySet()) {
            c.addAll(['--base-build-arg', "${e.key}=${e.value}".toString()])
        }
    }
    c.addAll(['--cache-dir', a.cacheDir])
    if (helperStore) {
        if (a.cacheKey) {
            c.addAll(['--key', a.cacheKey])
        }
        for (String p : a.restoreKeys) {
            c.addAll(['--restore-key', p])
        }
        if (!a.restoreCache) {
            c.add('--no-restore')
        }
        if (!a.saveCache) {
            c.add('--no-save')
        }
    } else {
        // The plugin (or nobody) keeps the cache dir: only the dance in and out of BuildKit.
        c.addAll(['--no-restore', '--no-save'])
    }
    // Not given: the helper's rule (on when the image names a registry host, so no cache tags
    // go to Docker Hub for a bare 'team/app').
    if (a.registryCache != null) {
        c.add(a.registryCache ? '--registry-cache' : '--no-registry-cache')
    }
    // Not given: the helper's default (gzip), or CICACHE_COMPRESSION / cicache.yml's build.compression.
    if (a.compression) {
        c.addAll(['--compression', a.compression])
    }
    if (a.compressionLevel != null) {
        c.addAll(['--compression-level', a.compressionLevel.toString()])
    }
    if (a.push) {
        c.add('--push')
    }
    if (a.rebuild) {
        c.add('--rebuild')
    }
    // The Markdown report is made from the log after the build (cicache report --format markdown).
    if (a.htmlReport) {
        c.addAll(['--report-html', a.htmlReportFile])
    }
    c.addAll(['--log', a.logFile, Cli.pathArg(a.context)])
    if (a.dockerArgs) {
        c.add('--')
        c.addAll(a.dockerArgs)
    }
    return c
}
