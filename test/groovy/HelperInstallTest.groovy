import org.junit.After
import org.junit.Before
import org.junit.Test

import static org.junit.Assert.*

/** Finding the helper, all for real: the shell, PATH lookup, curl of a file:// URL, sha256sum. */
class HelperInstallTest {
    Harness h
    File release

    @Before
    void setUp() {
        h = new Harness()
        h.env.remove('CICACHE_BIN')
        // A "release" of the helper, under a path that stands for a secret token in a presigned URL.
        release = new File(h.work, 'downloads/token-S3CR3T/cicache')
        release.parentFile.mkdirs()
        release.bytes = new File(Harness.ROOT, 'test/groovy/cicache-standin.sh').bytes
    }

    @After
    void tearDown() {
        h.cleanup()
    }

    String install(Map args = [:]) {
        return h.var('cicache').install(args)
    }

    static String sha256(File f) {
        return java.security.MessageDigest.getInstance('SHA-256').digest(f.bytes).encodeHex().toString()
    }

    @Test
    void cicacheBinWins() {
        h.env.CICACHE_BIN = new File(Harness.ROOT, 'test/groovy/cicache-standin.sh').path
        assertEquals(h.env.CICACHE_BIN, install())
    }

    @Test
    void cicacheBinThatIsNotExecutableIsAnError() {
        h.env.CICACHE_BIN = '/nonexistent/cicache'
        String msg = Harness.expectError { install() }
        assertTrue(msg, msg.contains("CICACHE_BIN is '/nonexistent/cicache', which is not an executable file on this agent"))
        assertTrue(msg, msg.contains('agent.Dockerfile'))
    }

    /** Puts the release on the agent's PATH as `cicache`; returns it. */
    File putOnPath() {
        File dir = new File(h.work, 'bin')
        dir.mkdirs()
        File bin = new File(dir, 'cicache')
        bin.bytes = release.bytes
        bin.setExecutable(true)
        h.env.PATH = "${dir.path}:/usr/bin:/bin".toString()
        return bin
    }

    @Test
    void foundOnPath() {
        File bin = putOnPath()
        assertEquals(bin.path, install())
    }

    @Test
    void missingEverywhereSaysHowToInstall() {
        String msg = Harness.expectError { install() }
        assertTrue(msg, msg.startsWith('cicache helper not found: CICACHE_BIN is not set, `cicache` is not on the agent\'s PATH and CICACHE_DOWNLOAD_URL is not set.'))
        assertTrue(msg, msg.contains('resources/io/cicache/agent.Dockerfile'))
        assertTrue(msg, msg.contains('CICACHE_DOWNLOAD_URL and CICACHE_SHA256'))
    }

    @Test
    void downloadedWithAMatchingChecksumThenReused() {
        h.env.CICACHE_DOWNLOAD_URL = release.toURI().toString()
        h.env.CICACHE_SHA256 = sha256(release).toUpperCase()
        String bin = install()
        File f = new File(bin)
        // Per agent (its cache dir), not per workspace.
        assertEquals(new File(h.work, '.cache/cicache/helper/' + sha256(release) + '/cicache').path, bin)
        assertTrue(f.canExecute())
        assertEquals(sha256(release), sha256(f))
        // The helper it installed runs.
        h.respond('list', [entries: []])
        h.env.CICACHE_BIN = bin
        assertEquals([entries: []], h.var('cicache').run(['list']))
        // A second install on this agent does not download again.
        h.env.remove('CICACHE_BIN')
        release.delete()
        assertEquals(bin, install())
        // The URL (it may carry a token) is in no script and no log line.
        String everything = (h.log + h.steps('sh').collect { it.args.script } + h.steps('echo')*.args).join('\n')
        assertFalse(everything.contains('S3CR3T'))
    }

    @Test
    void downloadArgumentsOverrideTheEnvironmentAndHoldForLaterSteps() {
        String bin = install(downloadUrl: release.toURI().toString(), sha256: sha256(release))
        assertTrue(new File(bin).canExecute())
        h.respond('list', [entries: []])
        assertEquals([entries: []], h.var('cicache').run(['list']))
        assertEquals(1, h.helperCalls('list').size())
    }

    @Test
    void wrongChecksumIsRefusedAndNothingIsKept() {
        String wrong = 'a' * 64
        h.env.CICACHE_DOWNLOAD_URL = release.toURI().toString()
        h.env.CICACHE_SHA256 = wrong
        String msg = Harness.expectError { install() }
        assertTrue(msg, msg.contains("has sha256 ${sha256(release)}, but CICACHE_SHA256 is ${wrong}"))
        assertTrue(msg, msg.contains('deleted and not run'))
        File dir = new File(h.work, '.cache/cicache/helper/' + wrong)
        assertTrue(dir.isDirectory())
        assertEquals([], dir.listFiles().toList())
    }

    /** Issue 23 item 6: one URL template and a checksum per architecture; the agent's `uname -m` picks. */
    @Test
    void perArchitectureUrlAndChecksum() {
        String arch = ['uname', '-m'].execute().text.trim().replace('amd64', 'x86_64').replace('arm64', 'aarch64')
        String other = arch == 'x86_64' ? 'aarch64' : 'x86_64'
        File archRelease = new File(h.work, "downloads/token-S3CR3T/cicache-${arch}-linux-musl")
        archRelease.bytes = release.bytes
        h.env.CICACHE_DOWNLOAD_URL = 'file://' + new File(h.work, 'downloads/token-S3CR3T/cicache-{arch}-linux-musl').path
        h.env.CICACHE_SHA256 = "${other}=${'b' * 64},${arch}=${sha256(archRelease)}".toString()
        String bin = install()
        assertEquals(sha256(archRelease), sha256(new File(bin)))
        // The checksum of another architecture does not pass for this one.
        h.env.CICACHE_SHA256 = "${arch}=${'c' * 64},${other}=${sha256(archRelease)}".toString()
        String msg = Harness.expectError { install() }
        assertTrue(msg, msg.contains("has sha256 ${sha256(archRelease)}, but CICACHE_SHA256 is ${'c' * 64} for ${arch}"))
        h.env.CICACHE_SHA256 = "${other}=${sha256(archRelease)}".toString()
        msg = Harness.expectError { install() }
        assertTrue(msg, msg.contains("CICACHE_SHA256 has no checksum for this agent's architecture (${arch})"))
        h.env.CICACHE_SHA256 = "sparc=${sha256(archRelease)}".toString()
        msg = Harness.expectError { install() }
        assertTrue(msg, msg.contains('is not a sha256 (64 hex digits) or x86_64=<sha256>,aarch64=<sha256>'))
    }

    /** Issue 23 item 6: a `cicache` on PATH of another release does not win over the pinned download. */
    @Test
    void theVersionOfTheHelperIsCheckedAgainstTheLibrarys() {
        String expected = new File(Harness.ROOT, 'resources/io/cicache/helper-version.txt').text.trim()
        File onPath = putOnPath()
        h.env.CICACHE_STANDIN_VERSION = '0.0.9'
        // No download configured: the PATH one, with a warning naming both versions.
        assertEquals(onPath.path, install())
        assertTrue(h.log.toString(), h.log.any { it.contains("warning: ${onPath.path} is version 0.0.9, but this library expects ${expected}") })
        // A pinned download: used instead, saying why.
        h.env.CICACHE_DOWNLOAD_URL = release.toURI().toString()
        h.env.CICACHE_SHA256 = sha256(release)
        String bin = install()
        assertTrue(bin, bin.contains('/cicache/helper/'))
        assertTrue(h.log.any { it.contains("${onPath.path} is version 0.0.9, the library wants ${expected}: using the pinned download instead") })
        // The same release on PATH wins (a patch level may differ).
        h.log.clear()
        h.env.CICACHE_STANDIN_VERSION = expected.replaceFirst(/\d+$/, '99')
        assertEquals(onPath.path, install())
        assertFalse(h.log.any { it.contains('warning') })
        // The real helper answers `--version` the way the check reads it.
        File real = new File(Harness.ROOT, 'target/debug/cicache')
        if (real.canExecute()) {
            String v = [real.path, '--version'].execute().text
            assertEquals(expected, io.cicache.Helper.versionIn(v))
        }
    }

    /**
     * The Alpine docker:cli container of a Kubernetes agent has busybox, no curl: the download
     * goes through busybox wget and sha256sum (an HTTP server of the test; busybox wget has no
     * file:// URLs).
     */
    @Test
    void theDownloadWorksWithBusyboxAlone() {
        File busybox = new File('/usr/bin/busybox')
        org.junit.Assume.assumeTrue('busybox is not installed (test/lib/groovy.sh installs busybox-static)', busybox.canExecute())
        File applets = new File(h.work, 'busybox-bin')
        applets.mkdirs()
        ['uname', 'sed', 'mkdir', 'dirname', 'sha256sum', 'cut', 'wget', 'chmod', 'mv', 'rm', 'printf', 'cat'].each {
            java.nio.file.Files.createSymbolicLink(new File(applets, it).toPath(), busybox.toPath())
        }
        def server = com.sun.net.httpserver.HttpServer.create(new InetSocketAddress('127.0.0.1', 0), 0)
        server.createContext('/') { ex ->
            byte[] body = release.bytes
            ex.sendResponseHeaders(ex.requestURI.path.endsWith('/cicache-x86_64') || ex.requestURI.path.endsWith('/cicache-aarch64') ? 200 : 404,
                body.length)
            ex.responseBody.withStream { it.write(body) }
        }
        server.start()
        try {
            h.env.PATH = applets.path
            h.env.CICACHE_DOWNLOAD_URL = "http://127.0.0.1:${server.address.port}/cicache-{arch}".toString()
            h.env.CICACHE_SHA256 = "x86_64=${sha256(release)},aarch64=${sha256(release)}".toString()
            String bin = install()
            assertEquals(sha256(release), sha256(new File(bin)))
            assertFalse(h.log.any { it.contains('warning') })
        } finally {
            server.stop(0)
        }
    }

    @Test
    void downloadWithoutAChecksumIsRefused() {
        h.env.CICACHE_DOWNLOAD_URL = release.toURI().toString()
        String msg = Harness.expectError { install() }
        assertTrue(msg, msg.contains('CICACHE_DOWNLOAD_URL is set but CICACHE_SHA256 is not'))
        h.env.CICACHE_SHA256 = 'deadbeef'
        msg = Harness.expectError { install() }
        assertTrue(msg, msg.contains("CICACHE_SHA256 ('deadbeef') is not a sha256"))
    }

    @Test
    void failedDownloadSaysSo() {
        h.env.CICACHE_DOWNLOAD_URL = new File(h.work, 'nothing-here').toURI().toString()
        h.env.CICACHE_SHA256 = sha256(release)
        String msg = Harness.expectError { install() }
        assertTrue(msg, msg.contains('the download from CICACHE_DOWNLOAD_URL failed (curl could not fetch the URL)'))
    }

    @Test
    void stepsFailClearlyWhenTheHelperIsMissing() {
        String msg = Harness.expectError { h.var('cachedDockerBuild').call(image: 'reg/app') }
        assertTrue(msg, msg.startsWith('cicache helper not found'))
        msg = Harness.expectError { h.var('cacheCleanup').call() }
        assertTrue(msg, msg.startsWith('cicache helper not found'))
    }

    @Test
    void aWindowsAgentIsRefusedClearly() {
        h.unix = false
        String msg = Harness.expectError { h.var('cachedDockerBuild').call(image: 'reg/app') }
        assertTrue(msg, msg.contains('need a Linux agent'))
        assertTrue(h.steps('sh').isEmpty())
    }
}
