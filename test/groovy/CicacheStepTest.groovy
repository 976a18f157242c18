import org.junit.After
import org.junit.Before
import org.junit.Test

import static org.junit.Assert.*

class CicacheStepTest {
    Harness h

    @Before
    void setUp() {
        h = new Harness()
    }

    @After
    void tearDown() {
        h.cleanup()
    }

    def getCicache() {
        return h.var('cicache')
    }

    @Test
    void restoreWithDefaultsOnABranch() {
        h.respond('restore', [ok: true, hit: true, key: 'pip-abc', scope: 'main'])
        Map r = Harness.assertSerializable(cicache.restore(key: 'pip-abc'))
        assertEquals([['--json', '--scope', 'main', 'restore', '--key', 'pip-abc', '--path', '.pip-cache']], h.helperCalls('restore'))
        assertEquals(true, r.hit)
    }

    @Test
    void restoreWithEveryOptionInAPullRequest() {
        h.env.CHANGE_ID = '9'
        h.env.CHANGE_TARGET = 'release'
        h.respond('restore', [ok: true, hit: false])
        Map r = cicache.restore(key: 'pip-{{ hashFiles "requirements.txt" }}', restoreKeys: ['pip-', 'p'], path: 'cache dir',
            lookupOnly: true, store: '/srv/c', defaultBranch: 'trunk', strict: true)
        assertEquals([['--json', '--store', '/srv/c', '--scope', 'pr-9', '--fallback-scope', 'release', '--fallback-scope', 'trunk',
                       '--strict', 'restore', '--key', 'pip-{{ hashFiles "requirements.txt" }}', '--restore-key', 'pip-',
                       '--restore-key', 'p', '--path', 'cache dir', '--lookup-only']], h.helperCalls('restore'))
        assertEquals(false, r.hit)
    }

    @Test
    void restoreFallbackScopesCanBeGivenExplicitly() {
        h.env.BRANCH_NAME = 'dev'
        h.respond('restore', [ok: true, hit: false])
        cicache.restore(key: 'k', fallbackScopes: ['main', 'release', 'dev'])
        assertEquals(['--json', '--scope', 'dev', '--fallback-scope', 'main', '--fallback-scope', 'release', 'restore', '--key', 'k', '--path', '.pip-cache'],
            h.helperCalls('restore')[0])
    }

    @Test
    void aMissWithFailOnMissStopsTheBuild() {
        h.respond('restore', [ok: true, hit: false], 3)
        String msg = Harness.expectError { cicache.restore(key: 'pip-x', restoreKeys: ['pip-'], failOnMiss: true) }
        assertTrue(msg, msg.contains("no cache entry matches key 'pip-x' or restore keys [pip-] (failOnMiss: true)"))
        assertTrue(h.helperCalls('restore')[0].contains('--fail-on-miss'))
    }

    @Test
    void aFailedRestoreShowsTheHelpersError() {
        h.respond('restore', [ok: false, error: 'store /srv/c: permission denied'], 1)
        String msg = Harness.expectError { cicache.restore(key: 'k') }
        assertEquals('cicache restore failed (exit code 1): store /srv/c: permission denied', msg)
    }

    @Test
    void saveWithEveryOption() {
        h.env.BRANCH_NAME = 'feature/x'
        h.respond('save', [ok: true, saved: true])
        Map r = cicache.save(key: 'pip-1', path: '.pip', update: true, ifChanged: true, exclude: ['*.lock', 'tmp/**'])
        assertEquals([['--json', '--scope', 'feature/x', '--fallback-scope', 'main', '--fallback-scope', 'master', 'save', '--key', 'pip-1', '--path', '.pip',
                       '--update', '--if-changed', '--exclude', '*.lock', '--exclude', 'tmp/**']], h.helperCalls('save'))
        assertEquals(true, r.saved)
    }

    @Test
    void keyReturnsTheRenderedKey() {
        h.respond('key', [key: 'pip-0f1e2d'])
        assertEquals('pip-0f1e2d', cicache.key('pip-{{ hashFiles "requirements*.txt" }}'))
        assertEquals('pip-0f1e2d', cicache.key(template: 'pip-{{ os }}', base: 'app'))
        assertEquals([['--json', 'key', '--', 'pip-{{ hashFiles "requirements*.txt" }}'], ['--json', 'key', '--base', 'app', '--', 'pip-{{ os }}']],
            h.helperCalls('key'))
    }

    @Test
    void keyWithoutAKeyFieldIsAClearError() {
        h.respond('key', [rendered: 'x'])
        String msg = Harness.expectError { cicache.key('pip-') }
        assertTrue(msg, msg.contains('has no "key" field'))
    }

    @Test
    void pruneOptions() {
        h.respond('prune', [ok: true, removed: []])
        cicache.prune()
        cicache.prune(maxAge: '14d', maxUnused: '7d', maxSize: '20GB', keepLast: 3, dryRun: true, store: 's3://b/p')
        assertEquals([['--json', 'prune'],
                      ['--json', '--store', 's3://b/p', 'prune', '--max-age', '14d', '--max-unused', '7d', '--max-size', '20GB',
                       '--keep-last', '3', '--dry-run']], h.helperCalls('prune'))
    }

    @Test
    void reportAsJsonTextAndMarkdown() {
        h.respond('report', [steps: [cached: 2, total: 3], verdict: 'cache: 2/3 steps cached'])
        Map j = Harness.assertSerializable(cicache.report(logs: ['a.log', 'b.log']))
        assertEquals(2, j.steps.cached)
        h.respondText('report', '# cache: 2/3 steps cached\n| step |\n')
        String md = cicache.report(logs: ['a.log'], format: 'markdown', output: 'out/report.md')
        assertEquals('# cache: 2/3 steps cached\n| step |\n', md)
        assertEquals(md, h.file('out/report.md').text)
        assertEquals([['--json', 'report', '--', 'a.log', 'b.log'], ['report', '--format', 'markdown', '--', 'a.log']],
            h.helperCalls('report'))
    }

    @Test
    void doctorReturnsItsChecklist() {
        h.respond('doctor', [ok: false, checks: [[name: 'docker', ok: false, fix: 'start dockerd']]], 1)
        Map r = cicache.doctor(dockerfile: 'Dockerfile')
        assertEquals('docker', r.checks[0].name)
        assertEquals([['--json', 'doctor', '--dockerfile', 'Dockerfile']], h.helperCalls('doctor'))
        cicache.doctor(context: 'app', cacheDir: '-odd/pip')
        assertEquals(['--json', 'doctor', '--context', 'app', '--cache-dir', './-odd/pip'], h.helperCalls('doctor')[1])
        String msg = Harness.expectError { cicache.doctor(failOnProblem: true) }
        assertTrue(msg, msg.contains('cicache doctor failed (exit code 1)'))
    }

    @Test
    void runPassesAnyCommand() {
        h.respond('list', [entries: [[key: 'pip-1']]])
        assertEquals('pip-1', cicache.run(['list', '--in-scope', 'main']).entries[0].key)
        assertEquals('pip-1', cicache.call(['list']).entries[0].key)
        h.respond('registry-status', [ok: false, error: 'repository not found'], 1)
        Map r = cicache.run(args: ['registry', 'status', '--image', 'reg/app'], returnStatus: true)
        assertEquals(1, r.exitCode)
        assertEquals('repository not found', r.result.error)
        String msg = Harness.expectError { cicache.run(['registry', 'status', '--image', 'reg/app']) }
        assertEquals('cicache registry failed (exit code 1): repository not found', msg)
        assertEquals([['--json', 'list', '--in-scope', 'main'], ['--json', 'list']], h.helperCalls('list'))
    }

    @Test
    void badArguments() {
        Map cases = [
            ({ cicache.restore([:]) })                      : "cicache.restore: argument 'key' is required",
            ({ cicache.restore(key: 'k', restorekeys: []) }): "cicache.restore: unknown argument 'restorekeys' (did you mean 'restoreKeys'?)",
            ({ cicache.save(key: 'k', exclude: '*.tmp') })  : "cicache.save: argument 'exclude' must be a list of strings",
            ({ cicache.prune(maxAge: '2 fortnights') })     : "cicache.prune: argument 'maxAge' must be a duration such as '14d', '72h' or '1h30m' (got the string '2 fortnights')",
            ({ cicache.prune(maxSize: 'big') })             : "cicache.prune: argument 'maxSize' must be a size such as '20GB'",
            ({ cicache.prune(keepLast: -1) })               : "cicache.prune: argument 'keepLast' must be a whole number >= 0",
            ({ cicache.report(logs: []) })                  : "cicache.report: argument 'logs' must name at least one log file",
            ({ cicache.report(logs: ['a'], format: 'html') }): "cicache.report: argument 'format' must be one of 'json', 'text', 'markdown' (got 'html')",
            ({ cicache.run([]) })                           : "cicache.run: argument 'args' must name a command",
            ({ cicache.run('list') })                       : "cicache.run: expected named arguments",
            ({ cicache.key('') })                           : "cicache.key: argument 'template' must not be empty",
            ({ cicache.install(sha: 'x') })                 : "cicache.install: unknown argument 'sha' (did you mean 'sha256'?)",
            ({ cicache.restore('pip-1') })                  : "cicache.restore: expected named arguments, e.g. cicache.restore(key: ...)",
            ({ cicache.save(['k']) })                       : "cicache.save: expected named arguments",
        ]
        cases.each { Closure c, String expected ->
            String msg = Harness.expectError(c)
            assertTrue("expected '${expected}' in '${msg}'", msg.contains(expected))
        }
        assertTrue(h.helperCalls().isEmpty())
    }
}
