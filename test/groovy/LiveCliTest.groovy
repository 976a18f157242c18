import org.junit.After
import org.junit.Before
import org.junit.Test

import static org.junit.Assert.*

/**
 * The commands the steps issue, run for real against the built helper (target/debug/cicache)
 * on a temp dir store, so the Groovy and the CLI cannot drift apart. Store commands and
 * `report` work offline and must succeed; commands that need docker or a registry run with
 * both unreachable (DOCKER_HOST on a missing socket, a registry on a closed port) and must
 * at least accept every flag the steps pass (no usage error, exit code 2).
 * A command that is not built yet fails here, saying which.
 */
class LiveCliTest {
    static final File BIN = new File(Harness.ROOT, 'target/debug/cicache')
    Harness h
    File store

    @Before
    void setUp() {
        h = new Harness()
        assertTrue("${BIN} is missing or not executable: build it with `cargo build -p cicache`", BIN.canExecute())
        h.env.CICACHE_BIN = BIN.path
        h.env.DOCKER_HOST = "unix://${h.work.path}/no-docker.sock".toString()
        h.env.CICACHE_PROGRESS = 'never'
        store = new File(h.work, 'store')
    }

    @After
    void tearDown() {
        h.cleanup()
    }

    def getCicache() {
        return h.var('cicache')
    }

    void writeCacheDir(String dir) {
        h.file("${dir}/wheels/numpy-2.1.0-cp312-cp312-manylinux_x86_64.whl").with { parentFile.mkdirs(); bytes = (0..<300000).collect { (byte) (it * 31 % 251) } as byte[] }
        h.file("${dir}/http-v2/a/b/c/d/e/0123456789abcdef").with { parentFile.mkdirs(); text = 'small file' }
        h.file("${dir}/selfcheck.json").text = '{"last_check": "2026-11-25"}'
    }

    static Map<String, String> digest(File dir) {
        Map<String, String> m = new TreeMap<>()
        dir.eachFileRecurse(groovy.io.FileType.FILES) { File f ->
            m[dir.toPath().relativize(f.toPath()).toString()] = java.security.MessageDigest.getInstance('SHA-256').digest(f.bytes).encodeHex().toString()
        }
        return m
    }

    /** Clap's usage errors in the helper's stderr, which the harness keeps in the log. */
    List<String> usageErrors() {
        return h.log.findAll { it =~ /^error: (unexpected argument|unrecognized subcommand|invalid value|the following required arguments|a value is required|unexpected value)/ ||
            it.startsWith('Usage: cicache') }
    }

    /** Runs a step; returns null on success, else the error() message. */
    static String attempt(Closure c) {
        try {
            c.call()
            return null
        } catch (PipelineError e) {
            return e.message
        }
    }

    void assertFlagsAccepted(String what, String failure) {
        List<String> usage = usageErrors()
        assertTrue("${what}: the helper rejected the flags the step passes (the CLI and the library have drifted):\n  " +
            (usage + [failure]).join('\n  '), usage.isEmpty() && !(failure ?: '').contains('exit code 2'))
        assertFalse("${what}: ${failure}", (failure ?: '').contains('not built yet'))
        // Every command prints one JSON document with --json, also when it fails.
        assertFalse("${what}: ${failure}", (failure ?: '').contains('printed no JSON result'))
    }

    @Test
    void keySaveRestoreRoundTripThroughTheSteps() {
        h.file('requirements.txt').text = 'numpy==2.1.0\n'
        writeCacheDir('.pip-cache')
        Map<String, String> before = digest(h.file('.pip-cache'))

        String key = cicache.key('pip-{{ hashFiles "requirements*.txt" }}')
        assertTrue(key, key.startsWith('pip-') && !key.contains('{{') && key.length() > 'pip-'.length())

        Map saved = cicache.save(key: key, path: '.pip-cache', store: store.path, exclude: ['selfcheck.json'])
        assertNotNull(saved)
        h.file('.pip-cache').deleteDir()

        Map restored = cicache.restore(key: key, path: '.pip-cache', store: store.path)
        assertNotNull(restored)
        Map<String, String> after = digest(h.file('.pip-cache'))
        before.remove('selfcheck.json')
        assertEquals(before, after)

        // A pull request restores main's entry through its fallback scope, by restore-key prefix.
        h.env.CHANGE_ID = '5'
        h.env.BRANCH_NAME = 'PR-5'
        cicache.restore(key: 'pip-something-new', restoreKeys: ['pip-'], path: 'pr-cache', store: store.path)
        assertEquals(after, digest(h.file('pr-cache')))

        // save of the same key again is accepted (a no-op), and with update/ifChanged.
        assertNotNull(cicache.save(key: key, path: 'pr-cache', store: store.path, update: true, ifChanged: true))
    }

    @Test
    void missAndFailOnMiss() {
        Map r = cicache.restore(key: 'nothing-here', restoreKeys: ['nothing-'], path: 'c', store: store.path, lookupOnly: true)
        assertNotNull(r)
        String msg = attempt { cicache.restore(key: 'nothing-here', path: 'c', store: store.path, failOnMiss: true) }
        assertNotNull('a miss with failOnMiss must stop the step', msg)
        assertTrue(msg, msg.contains("no cache entry matches key 'nothing-here'"))
    }

    @Test
    void pruneAndListAndVerify() {
        writeCacheDir('.pip-cache')
        cicache.save(key: 'pip-1', path: '.pip-cache', store: store.path)
        assertNotNull(cicache.prune(maxAge: '14d', maxUnused: '7d', maxSize: '20GB', keepLast: 2, dryRun: true, store: store.path))
        assertNotNull(cicache.prune(maxAge: '1h30m', store: store.path))
        assertNotNull(cicache.run(['--store', store.path, 'list']))
        assertNotNull(cicache.run(['--store', store.path, 'verify']))
        assertEquals([], usageErrors())
    }

    @Test
    void cleanupStoreAndBuilderAndRegistryParts() {
        String failure = attempt {
            h.var('cacheCleanup').call(store: store.path, maxSize: '1GB', keepLast: 1, cacheMounts: true,
                images: ['127.0.0.1:1/app'], keepTags: ['cache'], untagged: true, dryRun: true)
        }
        assertFlagsAccepted('cacheCleanup', failure)
        // The store part needs neither docker nor a registry: it must have worked.
        assertFalse(failure, (failure ?: '').contains('store prune failed'))
    }

    @Test
    void reportOfABuildKitLog() {
        h.file('build.log').text = '''#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#5 [2/3] COPY requirements.txt .
#5 CACHED
#6 [3/3] RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt
#6 1.204 Using cached numpy-2.1.0-cp312-cp312-manylinux_x86_64.whl (16.0 MB)
#6 DONE 3.1s
'''
        Map j = null
        String failure = attempt { j = cicache.report(logs: ['build.log']) }
        assertFlagsAccepted('cicache.report (json)', failure)
        assertNull(failure)
        // One report per log (the helper's document, docs/JSON.md), or the report itself.
        Map one = j.reports instanceof List ? j.reports[0] : j
        assertEquals("steps in ${j}", [total: 2, cached: 1], one.steps.subMap(['total', 'cached']))
        assertTrue("verdict in ${j}", one.verdict.toString().startsWith('cache: 1/2 steps cached'))
        String md = null
        failure = attempt { md = cicache.report(logs: ['build.log'], format: 'markdown', output: 'report.md') }
        assertFlagsAccepted('cicache.report (markdown)', failure)
        assertNull(failure)
        assertTrue(md, md.contains('1/2 steps cached'))
        assertEquals(md, h.file('report.md').text)
    }

    @Test
    void cachedDockerBuildFlagsAreAcceptedByTheHelper() {
        h.file('Dockerfile').text = 'FROM scratch\nCOPY requirements.txt /\n'
        h.file('requirements.txt').text = 'numpy\n'
        Map everyOption = [image: '127.0.0.1:1/app', tags: ['t1', 'latest'], dockerfile: 'Dockerfile',
                           buildArgs: [A: 'b c'], target: 'final', dockerArgs: ['--label', 'x=y'], cacheKey: 'pip-{{ hashFiles "requirements*.txt" }}',
                           restoreKeys: ['pip-'], store: store.path, cacheBackend: 'helper', restoreCache: false, saveCache: false, push: true,
                           registryCache: true, strict: true, logFile: 'out/build.log', reportFile: 'out/report.md']
        assertFlagsAccepted('cachedDockerBuild (every option)', attempt { h.var('cachedDockerBuild').call(everyOption) })
        h.log.clear()
        assertFlagsAccepted('cachedDockerBuild (defaults, no registry cache)',
            attempt { h.var('cachedDockerBuild').call(image: '127.0.0.1:1/app', registryCache: false) })
        h.log.clear()
        assertFlagsAccepted('cachedDockerBuild (plugin: only the BuildKit dance)',
            attempt { h.var('cachedDockerBuild').call(image: '127.0.0.1:1/app', cacheBackend: 'none') })
    }

    @Test
    void registryLoginFlagsAreAcceptedByTheHelper() {
        h.credentials['reg'] = ['robot', 'not-a-real-password']
        String failure = attempt { h.var('cachedDockerBuild').call(image: '127.0.0.1:1/app', registryCredentialsId: 'reg') }
        assertFlagsAccepted('cachedDockerBuild (registry login with a credential)', failure)
        assertFalse(h.log.join('\n').contains('not-a-real-password'))
        h.log.clear()
        failure = attempt { h.var('cachedDockerBuild').call(image: '127.0.0.1:1/app', registryLogin: true, region: 'eu-north-1') }
        assertFlagsAccepted('cachedDockerBuild (registry login)', failure)
    }

    @Test
    void doctorAcceptsItsFlags() {
        h.file('Dockerfile').text = 'FROM scratch\n'
        String failure = attempt { cicache.doctor(dockerfile: 'Dockerfile', context: '.', cacheDir: '.pip-cache', store: store.path) }
        assertFlagsAccepted('cicache.doctor', failure)
    }
}
