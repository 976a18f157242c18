import org.junit.After
import org.junit.Before
import org.junit.Test

import static org.junit.Assert.*

/** The library's files: help for every step and argument, resources, the Jenkinsfiles run. */
class LibraryLayoutTest {
    static final File ROOT = Harness.ROOT
    Harness h

    @Before
    void setUp() {
        h = new Harness()
    }

    @After
    void tearDown() {
        h.cleanup()
    }

    static List<File> vars() {
        return new File(ROOT, 'vars').listFiles().findAll { it.name.endsWith('.groovy') }.sort()
    }

    @Test
    void everyStepHasItsHelpTxt() {
        List<File> v = vars()
        assertEquals(['cacheCleanup.groovy', 'cachedDockerBuild.groovy', 'cicache.groovy'], v*.name)
        v.each { File g ->
            File txt = new File(g.parentFile, g.name - '.groovy' + '.txt')
            assertTrue("${txt} is missing", txt.isFile())
            assertTrue("${txt} is too short to help", txt.text.length() > 500)
        }
    }

    @Test
    void everyArgumentIsDocumentedInTheStepsHelp() {
        vars().each { File g ->
            String txt = new File(g.parentFile, g.name - '.groovy' + '.txt').text
            List<String> names = (g.text =~ /(?m)^\s+(\w+)\s*:\s*\[type:/).collect { it[1] }.unique()
            assertTrue("no argument spec found in ${g.name}", names.size() >= 4)
            names.each { String n ->
                assertTrue("${g.name}: argument '${n}' is not in ${g.name - '.groovy'}.txt", txt.contains(n + ':') || txt.contains("<code>${n}</code>"))
            }
        }
    }

    @Test
    void everyCicacheMethodIsDocumented() {
        String txt = new File(ROOT, 'vars/cicache.txt').text
        List<String> methods = (new File(ROOT, 'vars/cicache.groovy').text =~ /(?m)^def (\w+)\(/).collect { it[1] }.unique() - ['call']
        assertEquals(['install', 'key', 'restore', 'save', 'prune', 'report', 'doctor', 'run'], methods)
        methods.each { assertTrue("cicache.${it} is not in cicache.txt", txt.contains("cicache.${it}(")) }
    }

    @Test
    void sharedClassesAreSerializableForCps() {
        new File(ROOT, 'src/io/cicache').listFiles().findAll { it.name.endsWith('.groovy') }.each { File f ->
            Class c = Class.forName('io.cicache.' + (f.name - '.groovy'), true, getClass().classLoader)
            assertTrue("${c.name} must implement Serializable (CPS keeps it in the program state)", Serializable.isAssignableFrom(c))
        }
    }

    @Test
    void cleanupJenkinsfileRunsNightlyAndCallsTheCleanupStep() {
        File f = new File(ROOT, 'resources/io/cicache/cache-cleanup.Jenkinsfile')
        assertTrue(f.text.contains("triggers { cron('H 3 * * *') }"))
        assertEquals(f.text, h.var('cicache').libraryResource('io/cicache/cache-cleanup.Jenkinsfile'))
        h.respond('prune', [ok: true])
        h.respond('docker-prune', [ok: true])
        h.respond('registry-gc', [ok: true])
        h.runJenkinsfile(f, [DRY_RUN: true, IMAGES: 'reg/a, reg/b', STORE: '/var/cache/cicache'])
        assertEquals([['cron', 'H 3 * * *']], h.steps('dsl:cron').collect { [it.step - 'dsl:', it.args[0]] })
        assertEquals(['prune', 'docker', 'registry', 'registry'], h.helperCalls().collect { Harness.commandOf(it) })
        assertTrue(h.helperCalls().every { it.contains('--dry-run') })
        assertEquals(['reg/a', 'reg/b'], h.helperCalls('registry').collect { it[it.indexOf('--image') + 1] })
        assertEquals('/var/cache/cicache', h.helperCalls('prune')[0][h.helperCalls('prune')[0].indexOf('--store') + 1])
    }

    @Test
    void exampleJenkinsfileRunsAgainstTheSteps() {
        h.env.GIT_COMMIT = '0123abc'
        // What the example's `environment {}` sets (the harness does not evaluate that block).
        h.env.CICACHE_STORE = 's3://ci-caches/cicache'
        h.respond('build', [ok: true, steps: [cached: 5, total: 6], verdict: 'cache: 5/6 steps cached'])
        h.respond('restore', [ok: true, hit: false])
        h.respond('save', [ok: true])
        h.respond('registry-login', [ok: true])
        h.respond('prune', [ok: true])
        h.respond('docker-prune', [ok: true])
        h.respond('registry-gc', [ok: true])
        // The example's test stage runs pip and pytest: make them no-ops on this PATH.
        File bin = new File(h.work, 'bin')
        bin.mkdirs()
        new File(bin, 'python3').with { text = '#!/bin/sh\nexit 0\n'; setExecutable(true) }
        h.env.PATH = "${bin.path}:/usr/bin:/bin".toString()
        h.runJenkinsfile(new File(ROOT, 'Jenkinsfile.example'))
        List<String> build = h.helperCalls('build')[0]
        assertTrue(build.containsAll(['--tag', '0123abc', '--push']))
        // The harness runs every stage (it does not evaluate `when`): the build stages (the stand-in
        // writes no Markdown report, so the step makes it from the log), then the cleanup.
        assertEquals(['registry', 'build', 'report', 'restore', 'save', 'prune', 'docker', 'registry'], h.helperCalls().collect { Harness.commandOf(it) })
        assertEquals([['cron', 'H 3 * * *']], h.steps('dsl:cron').collect { [it.step - 'dsl:', it.args[0]] })
        assertEquals(['TimerTrigger'] * 3, h.steps('dsl:triggeredBy').collect { it.args[0] })
        assertEquals('cache: 5/6 steps cached', h.currentBuild.description)
        assertTrue(h.log.contains('cached steps: 5/6 (helper)'))
    }

    @Test
    void agentDockerfileInstallsAPinnedOrBuiltHelper() {
        String d = new File(ROOT, 'resources/io/cicache/agent.Dockerfile').text
        assertTrue(d.contains('sha256sum -c'))
        assertTrue(d.contains('cargo build --release --locked -p cicache'))
        assertTrue(d.contains('AS agent-from-source') && d.contains('AS agent-from-release'))
    }

    @Test
    void docsDescribeEveryStep() {
        String doc = new File(ROOT, 'docs/JENKINS.md').text
        ['cachedDockerBuild', 'cicache.restore', 'cacheCleanup', 'CICACHE_DOWNLOAD_URL', 'CICACHE_SHA256', 'CICACHE_BIN',
         'cacheBackend', 'test/groovy/run.sh'].each {
            assertTrue("docs/JENKINS.md does not mention ${it}", doc.contains(it))
        }
    }

    /** The helper version the library expects is the workspace's (one release holds both). */
    @Test
    void helperVersionMatchesTheCargoWorkspace() {
        String cargo = new File(ROOT, 'Cargo.toml').text
        def m = cargo =~ /(?m)^version\s*=\s*"([^"]+)"/
        assertTrue('no version in Cargo.toml', m.find())
        assertEquals(m.group(1), new File(ROOT, 'resources/io/cicache/helper-version.txt').text.trim())
    }

}
