import groovy.json.JsonOutput
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.customizers.ImportCustomizer
import org.jenkinsci.plugins.workflow.steps.StepDescriptor

/** What error() throws (Jenkins throws hudson.AbortException). */
class PipelineError extends RuntimeException {
    PipelineError(String msg) {
        super(msg)
    }
}

/**
 * The one test harness: loads vars/*.groovy into a GroovyShell whose pipeline steps are
 * recording stand-ins. `sh` runs its script for real with /bin/sh in a temp workspace (so
 * quoting, the exit-code marker and the download are real); the helper is either the
 * stand-in script cicache-standin.sh (canned results per command, records its argv) or the
 * real target/debug/cicache. The Jenkins-only parts (the `cache` step of a plugin,
 * credentials, currentBuild, archiveArtifacts) are recorded and checked by the tests.
 */
class Harness {
    static final File ROOT = new File(System.getProperty('cicache.root') ?: '.').canonicalFile

    final File work
    final File workspace
    final File standinDir
    final Map<String, Object> env = [:]
    final List<Map> calls = []
    final List<String> log = []
    final Map<String, List<String>> credentials = [:]
    final Map currentBuild = [description: null, result: null]
    final Binding binding = new Binding()
    boolean unix = true
    private final List<List<String>> envStack = []

    Harness() {
        work = File.createTempDir('cicache-groovy', '')
        workspace = new File(work, 'ws')
        standinDir = new File(work, 'standin')
        workspace.mkdirs()
        standinDir.mkdirs()
        StepDescriptor.reset()
        env.putAll([
            PATH               : '/usr/bin:/bin',
            HOME               : work.path,
            WORKSPACE          : workspace.path,
            BRANCH_NAME        : 'main',
            BUILD_NUMBER       : '7',
            CICACHE_STANDIN_DIR: standinDir.path,
            CICACHE_BIN        : new File(ROOT, 'test/groovy/cicache-standin.sh').path,
        ])
        bindSteps()
        loadVars()
    }

    void cleanup() {
        work.deleteDir()
    }

    // ---- the vars ----------------------------------------------------------------------

    private void loadVars() {
        CompilerConfiguration cc = new CompilerConfiguration()
        cc.addCompilationCustomizers(new ImportCustomizer().addImports('com.cloudbees.groovy.cps.NonCPS'))
        GroovyShell shell = new GroovyShell(getClass().classLoader, binding, cc)
        new File(ROOT, 'vars').listFiles().findAll { it.name.endsWith('.groovy') }.sort().each { File f ->
            Script s = shell.parse(f)
            s.setBinding(binding)
            binding.setVariable(f.name - '.groovy', s)
        }
    }

    Script var(String name) {
        return (Script) binding.getVariable(name)
    }

    // ---- the steps ---------------------------------------------------------------------

    private void record(String step, Object args) {
        calls.add([step: step, args: args])
    }

    private void bindSteps() {
        Harness h = this
        binding.setVariable('env', env)
        binding.setVariable('currentBuild', currentBuild)
        binding.setVariable('params', [:])
        binding.setVariable('sh', { Object a -> h.sh(a) })
        binding.setVariable('echo', { Object m -> h.record('echo', m.toString()); h.log.add(m.toString()) })
        binding.setVariable('error', { Object m -> h.record('error', m.toString()); throw new PipelineError(m.toString()) })
        binding.setVariable('withEnv', { List l, Closure c ->
            h.record('withEnv', l.collect { it.toString() })
            h.envStack.add(l.collect { it.toString() })
            try {
                return c.call()
            } finally {
                h.envStack.remove(h.envStack.size() - 1)
            }
        })
        binding.setVariable('usernamePassword', { Map m -> [kind: 'usernamePassword'] + m })
        binding.setVariable('aws', { Map m -> [kind: 'aws'] + m })
        binding.setVariable('unstable', { Object m -> h.record('unstable', m.toString()); h.currentBuild.result = 'UNSTABLE' })
        binding.setVariable('withCredentials', { List l, Closure c ->
            h.record('withCredentials', l)
            List<String> vars = []
            l.each { Map b ->
                List<String> up = h.credentials[b.credentialsId]
                if (up == null) {
                    throw new PipelineError("ERROR: Could not find credentials entry with ID '${b.credentialsId}'")
                }
                if (b.kind == 'aws') {
                    vars.add("${b.accessKeyVariable}=${up[0]}".toString())
                    vars.add("${b.secretKeyVariable}=${up[1]}".toString())
                } else {
                    vars.add("${b.usernameVariable}=${up[0]}".toString())
                    vars.add("${b.passwordVariable}=${up[1]}".toString())
                }
            }
            h.envStack.add(vars)
            try {
                return c.call()
            } finally {
                h.envStack.remove(h.envStack.size() - 1)
            }
        })
        binding.setVariable('fileExists', { Object f -> h.file(f.toString()).exists() })
        binding.setVariable('readFile', { Object a -> h.file(a instanceof Map ? a.file.toString() : a.toString()).text })
        binding.setVariable('writeFile', { Map a ->
            h.record('writeFile', a)
            File f = h.file(a.file.toString())
            f.parentFile.mkdirs()
            f.text = a.text.toString()
        })
        binding.setVariable('archiveArtifacts', { Map a -> h.record('archiveArtifacts', a) })
        binding.setVariable('pwd', { Object... a -> (a && a[0] instanceof Map && a[0].tmp) ? h.workspace.path + '@tmp' : h.workspace.path })
        binding.setVariable('isUnix', { -> h.unix })
        binding.setVariable('libraryResource', { String p -> new File(ROOT, "resources/${p}").text })
    }

    File file(String path) {
        File f = new File(path)
        return f.absolute ? f : new File(workspace, path)
    }

    Map<String, String> effectiveEnv() {
        Map<String, String> e = [:]
        env.each { k, v -> if (v != null) e[k.toString()] = v.toString() }
        envStack.each { List<String> l ->
            l.each { String kv ->
                int i = kv.indexOf('=')
                e[kv.substring(0, i)] = kv.substring(i + 1)
            }
        }
        return e
    }

    /** Runs the script like Jenkins: a #! script directly, anything else under `sh -xe`. */
    Object sh(Object a) {
        Map m = a instanceof Map ? (Map) a : [script: a]
        String script = m.script.toString()
        record('sh', [script: script, returnStdout: m.returnStdout ?: false, returnStatus: m.returnStatus ?: false,
                      label: m.label?.toString(), env: effectiveEnv()])
        File f = File.createTempFile('script', '.sh', work)
        f.text = script
        f.setExecutable(true)
        List<String> cmd = script.startsWith('#!') ? [f.path] : ['/bin/sh', '-xe', f.path]
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(workspace)
        pb.environment().clear()
        pb.environment().putAll(effectiveEnv())
        Process p = pb.start()
        p.outputStream.close()
        ByteArrayOutputStream out = new ByteArrayOutputStream()
        ByteArrayOutputStream err = new ByteArrayOutputStream()
        p.waitForProcessOutput(out, err)
        int rc = p.waitFor()
        f.delete()
        String stdout = out.toString('UTF-8')
        err.toString('UTF-8').readLines().each { log.add(it) }
        if (!m.returnStdout) {
            stdout.readLines().each { log.add(it) }
        }
        if (m.returnStatus) {
            return rc
        }
        if (rc != 0) {
            throw new PipelineError("script returned exit code ${rc}")
        }
        return m.returnStdout ? stdout : null
    }

    // ---- the helper stand-in -------------------------------------------------------------

    /** The stand-in helper prints this JSON for COMMAND (e.g. 'build', 'registry-login') and exits with status. */
    void respond(String command, Map json, int status = 0) {
        respondText(command, JsonOutput.prettyPrint(JsonOutput.toJson(json)) + '\n', status)
    }

    void respondText(String command, String text, int status = 0) {
        new File(standinDir, "${command}.out").text = text
        new File(standinDir, "${command}.status").text = status.toString()
    }

    /** Every call of the stand-in helper: its arguments, as it received them. */
    List<List<String>> helperCalls() {
        File f = new File(standinDir, 'calls')
        if (!f.exists()) {
            return []
        }
        return f.text.readLines().collect { String l -> l.split('\u001f', -1).toList().dropRight(1) }
    }

    /** The arguments of the stand-in's calls whose command (after the global options) is COMMAND. */
    List<List<String>> helperCalls(String command) {
        return helperCalls().findAll { List<String> c -> commandOf(c) == command }
    }

    static String commandOf(List<String> argv) {
        int i = 0
        while (i < argv.size()) {
            String a = argv[i]
            if (a in ['--store', '--scope', '--fallback-scope', '--progress', '--config', '--timeout']) {
                i += 2
            } else if (a.startsWith('-')) {
                i++
            } else {
                return a
            }
        }
        return null
    }

    String stdinOf(String command) {
        File f = new File(standinDir, "${command}.stdin")
        return f.exists() ? f.text : null
    }

    // ---- plugins ------------------------------------------------------------------------

    /**
     * Installs the `cache` step of a plugin: 'jobcacher', 'pipeline-cache', 'other' (some
     * other plugin's `cache` step), 'refused' (Job Cacher installed, but the lookup refused
     * as in a sandboxed library) or null (none).
     */
    void installCachePlugin(String which) {
        StepDescriptor.reset()
        Harness h = this
        if (which == null) {
            binding.variables.remove('cache')
            binding.variables.remove('arbitraryFileCache')
            return
        }
        Map<String, Class> classes = [
            'jobcacher'     : jenkins.plugins.jobcacher.pipeline.CacheStep,
            'pipeline-cache': io.jenkins.plugins.pipeline.cache.CacheStep,
            'other'         : java.util.ArrayList,
            'refused'       : jenkins.plugins.jobcacher.pipeline.CacheStep,
        ]
        StepDescriptor.installed['cache'] = new StepDescriptor(classes[which])
        StepDescriptor.refused = which == 'refused'
        binding.setVariable('cache', { Map a, Closure body ->
            h.record('cache', a)
            h.log.add('[cache plugin] restore')
            def r = body.call()
            h.log.add('[cache plugin] save')
            return r
        })
        if (which in ['jobcacher', 'refused']) {
            binding.setVariable('arbitraryFileCache', { Map a -> [symbol: 'arbitraryFileCache', args: a] })
        }
    }

    // ---- Jenkinsfiles --------------------------------------------------------------------

    /** Runs a declarative Jenkinsfile's stages with this harness's steps (see DeclarativeScript). */
    Object runJenkinsfile(File f, Map params = [:]) {
        CompilerConfiguration cc = new CompilerConfiguration()
        cc.scriptBaseClass = 'DeclarativeScript'
        binding.setVariable('__harness', this)
        binding.setVariable('params', params)
        String text = f.text.replaceAll(/(?m)^@Library\(.*\)\s*_\s*$/, '')
        Script s = new GroovyShell(getClass().classLoader, binding, cc).parse(text, f.name.replaceAll(/[^A-Za-z0-9]/, '_'))
        return s.run()
    }

    // ---- assertions helpers ---------------------------------------------------------------

    List<Map> steps(String name) {
        return calls.findAll { it.step == name }
    }

    /** What a step returns lives on in the CPS program state: it must serialize (plain Maps, Lists, Strings). */
    static Object assertSerializable(Object o) {
        new ObjectOutputStream(new ByteArrayOutputStream()).writeObject(o)
        return o
    }

    /** Runs CODE expecting error(); returns the message. */
    static String expectError(Closure code) {
        try {
            code.call()
        } catch (PipelineError e) {
            return e.message
        }
        throw new AssertionError('expected the step to fail with error(), but it returned')
    }
}
