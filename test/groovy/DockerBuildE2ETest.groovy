import org.junit.After
import org.junit.Before
import org.junit.Test

import static org.junit.Assert.*

/**
 * cachedDockerBuild end to end: the step, the real helper (target/debug/cicache) and a real
 * dockerd of our own (fresh data-root, no network, the base images test/lib/docker.sh saved).
 * Needs CICACHE_TEST_DOCKERD=1 and CICACHE_TEST_IMAGES (set by test/run.sh); without them it
 * prints "skipped: ..." unless CICACHE_TEST_REQUIRE_SERVICES=1, where it fails.
 * CICACHE_TEST_GROOVY_BIN runs another helper binary; CICACHE_TEST_VERBOSE=1 prints the log.
 */
class DockerBuildE2ETest {
    static final File BIN = new File(System.getenv('CICACHE_TEST_GROOVY_BIN') ?: new File(Harness.ROOT, 'target/debug/cicache').path)
    Harness h
    File dockerDir
    Process dockerd
    String skipped

    @Before
    void setUp() {
        String images = System.getenv('CICACHE_TEST_IMAGES')
        if (System.getenv('CICACHE_TEST_DOCKERD') != '1' || !images || !new File(images, 'busybox.tar').isFile()) {
            skipped = 'CICACHE_TEST_DOCKERD=1 and CICACHE_TEST_IMAGES (with busybox.tar) are not set; run test/run.sh'
            if (System.getenv('CICACHE_TEST_REQUIRE_SERVICES') == '1') {
                fail(skipped)
            }
            println "skipped: ${skipped}"
            return
        }
        assertTrue("${BIN} is missing: build it with `cargo build -p cicache`", BIN.canExecute())
        h = new Harness()
        // Short paths: the daemon's unix sockets must fit in 108 bytes.
        dockerDir = java.nio.file.Files.createTempDirectory(java.nio.file.Paths.get('/tmp'), 'cgd').toFile()
        String sock = "unix://${dockerDir}/sock"
        dockerd = new ProcessBuilder(['dockerd', '--bridge', 'none', '--iptables=false', '--ip-masq=false',
                                      '--data-root', "${dockerDir}/root".toString(), '--exec-root', "${dockerDir}/exec".toString(),
                                      '--host', sock, '--pidfile', "${dockerDir}/pid".toString()])
            .redirectErrorStream(true).redirectOutput(new File(dockerDir, 'log')).start()
        h.env.DOCKER_HOST = sock
        h.env.CICACHE_BIN = BIN.path
        h.env.CICACHE_HELPER_IMAGE = 'cicache-test/busybox:latest'
        long deadline = System.currentTimeMillis() + 60000
        while (docker(['version']) != 0) {
            if (System.currentTimeMillis() > deadline || !dockerd.alive) {
                fail("dockerd did not start:\n" + new File(dockerDir, 'log').text.readLines().takeRight(20).join('\n'))
            }
            sleep(500)
        }
        assertEquals(0, docker(['load', '-i', new File(images, 'busybox.tar').path]))
    }

    int docker(List<String> args) {
        ProcessBuilder pb = new ProcessBuilder(['/usr/bin/docker'] + args).redirectErrorStream(true)
        pb.environment().put('DOCKER_HOST', h.env.DOCKER_HOST.toString())
        Process p = pb.start()
        p.inputStream.text
        return p.waitFor()
    }

    @After
    void tearDown() {
        if (dockerd != null) {
            dockerd.destroy() // SIGTERM to the dockerd this test started
            if (!dockerd.waitFor(30, java.util.concurrent.TimeUnit.SECONDS)) {
                dockerd.destroyForcibly()
            }
            new ProcessBuilder(['rm', '-rf', dockerDir.path]).start().waitFor()
        }
        h?.cleanup()
    }

    @Test
    void aBuildThroughTheStepReturnsTheReportAndDescribesTheBuild() {
        if (skipped) {
            return
        }
        h.file('Dockerfile').text = '''FROM cicache-test/busybox:latest
RUN --mount=type=cache,target=/root/.cache/pip sh -c 'ls /root/.cache/pip > /seen.txt; date > /root/.cache/pip/wheel-$$.txt'
'''
        File store = new File(h.work, 'store')
        Map args = [image: 'cicache-test/jenkins-e2e', cacheBackend: 'helper', store: store.path, registryCache: false,
                    cacheKey: 'pip-e2e', dockerArgs: ['--network', 'none'], archiveReport: true]
        Map first = h.var('cachedDockerBuild').call(args)
        if (System.getenv("CICACHE_TEST_VERBOSE")) { println first; h.log.each { println "LOG: $it" } }
        assertTrue("steps in ${first}", first.steps.total >= 1)
        assertTrue("verdict in ${first}", first.verdict.toString().startsWith('cache:'))
        assertEquals(first.verdict, h.currentBuild.description)
        assertTrue('the Markdown report is written', h.file(first.reportFile).text.trim().length() > 0)
        // The Markdown report (archiveReport) and, with no HTML Publisher plugin, the HTML one
        // that the real helper wrote (cicache build --report-html).
        assertEquals([first.reportFile, first.htmlReportFile], h.steps('archiveArtifacts')*.args*.artifacts)
        assertTrue('the HTML report is written', h.file(first.htmlReportFile).text.contains('<html'))

        // The cache dir went to the store under the build's scope.
        Map list = h.var('cicache').run(['--store', store.path, 'list'])
        assertTrue("entries in ${list}", list.toString().contains('pip-e2e'))

        // The same build again on this daemon: its layers are cached.
        Map second = h.var('cachedDockerBuild').call(args)
        assertTrue("cached steps in ${second}", second.steps.cached >= 1)
    }
}
