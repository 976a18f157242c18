import org.junit.After
import org.junit.Before
import org.junit.Test

import static org.junit.Assert.*

/** cachedDockerBuild(baseDockerfile: ...): the base image options and the base's report line. */
class CachedDockerBuildBaseTest {
    Harness h
    static final Map BASE = [status: 'built', ref: 'registry.example.com/team/app:base-0123456789abcdef01234567',
                             changes: [[input: 'file:requirements.txt', change: 'changed']],
                             summary: 'base: built registry.example.com/team/app:base-0123456789abcdef01234567 ' +
                                 '(the inputs changed since registry.example.com/team/app:base-aa: file:requirements.txt changed)']
    static final Map RESULT = [ok: true, steps: [cached: 2, total: 3], verdict: 'cache: 2/3 steps cached', base: BASE]

    @Before
    void setUp() {
        h = new Harness()
        h.respond('build', RESULT)
    }

    @After
    void tearDown() {
        h.cleanup()
    }

    List<String> buildCall() {
        List<List<String>> c = h.helperCalls('build')
        assertEquals('one `cicache build` call', 1, c.size())
        return c[0]
    }

    @Test
    void baseOptionsBecomeTheirFlagsAndTheBaseLineIsLogged() {
        Map r = Harness.assertSerializable(h.var('cachedDockerBuild').call(
            image: 'registry.example.com/team/app', dockerfile: 'Dockerfile.app',
            baseDockerfile: 'Dockerfile.base', baseInputs: ['requirements*.txt', 'constraints.txt'],
            baseBuildArgs: [PYTHON_IMAGE: 'python:3.12-slim']))
        List<String> argv = buildCall()
        assertEquals(['--json', '--scope', 'main', 'build', '--image', 'registry.example.com/team/app',
                      '-f', 'Dockerfile.app',
                      '--base-dockerfile', 'Dockerfile.base',
                      '--base-input', 'requirements*.txt', '--base-input', 'constraints.txt',
                      '--base-build-arg', 'PYTHON_IMAGE=python:3.12-slim',
                      '--cache-dir', '.pip-cache', '--report-html', '.cicache/app-7-report.html',
                      '--log', '.cicache/app-7.log',
                      '.'], argv)
        assertEquals('built', r.base.status)
        assertEquals('file:requirements.txt', r.base.changes[0].input)
        assertTrue(h.log.toString(), h.log.contains('cicache: ' + BASE.summary))
        assertEquals(RESULT.verdict + '\n' + BASE.summary, h.currentBuild.description)
    }

    @Test
    void withoutABaseDockerfileNoBaseFlagIsPassedEvenWithBaseInputs() {
        h.respond('build', [ok: true, steps: [cached: 1, total: 1], verdict: 'v'])
        h.var('cachedDockerBuild').call(image: 'registry.example.com/team/app', baseInputs: ['x.txt'],
            baseBuildArgs: [A: 'b'])
        List<String> argv = buildCall()
        assertFalse(argv.toString(), argv.any { it.startsWith('--base') })
        assertFalse(h.log.any { it.startsWith('cicache: base:') })
    }

    @Test
    void anEmptyBaseDockerfileIsRefusedWithTheArgumentsName() {
        try {
            h.var('cachedDockerBuild').call(image: 'registry.example.com/team/app', baseDockerfile: '')
            fail('expected an error')
        } catch (Exception e) {
            assertTrue(e.message, e.message.contains('baseDockerfile'))
        }
        assertEquals(0, h.helperCalls('build').size())
    }
}
