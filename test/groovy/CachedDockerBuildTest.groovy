import org.junit.After
import org.junit.Before
import org.junit.Test

import static org.junit.Assert.*

class CachedDockerBuildTest {
    Harness h
    static final Map BUILD_RESULT = [ok: true, steps: [cached: 7, total: 9], verdict: 'cache: 7/9 steps cached, 41/42 wheels from cache, build 1m12s']

    @Before
    void setUp() {
        h = new Harness()
        h.respond('build', BUILD_RESULT)
    }

    @After
    void tearDown() {
        h.cleanup()
    }

    Map build(Map args) {
        return h.var('cachedDockerBuild').call(args)
    }

    List<String> buildCall() {
        List<List<String>> c = h.helperCalls('build')
        assertEquals('one `cicache build` call', 1, c.size())
        return c[0]
    }

    /** The value after each occurrence of FLAG in ARGV. */
    static List<String> values(List<String> argv, String flag) {
        List<String> v = []
        for (int i = 0; i < argv.size() - 1; i++) {
            if (argv[i] == flag) {
                v.add(argv[i + 1])
            }
        }
        return v
    }

    @Test
    void minimalBuildOnABranchUsesTheHelperStoreAndReturnsTheJsonResult() {
        Map r = build(image: 'registry.example.com/team/app')
        List<String> argv = buildCall()
        assertEquals(['--json', '--scope', 'main', 'build', '--image', 'registry.example.com/team/app',
                      '--cache-dir', '.pip-cache', '--registry-cache', '--log', 'cicache-build.log',
                      '--report-markdown', 'cicache-report.md', '.'], argv)
        assertEquals(7, r.steps.cached)
        assertEquals(9, r.steps.total)
        assertEquals('helper', r.cacheBackend)
        assertEquals('main', r.scope)
        assertEquals(BUILD_RESULT.verdict, h.currentBuild.description)
    }
}
