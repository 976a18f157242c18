import org.junit.After
import org.junit.Before
import org.junit.Test
import org.jenkinsci.plugins.workflow.steps.StepDescriptor

import static org.junit.Assert.*

class CachedDockerBuildTest {
    Harness h
    static final Map BUILD_RESULT = [ok: true, steps: [cached: 7, total: 9], verdict: 'cache: 7/9 steps cached, 41/42 wheels from cache, build 1m12s']

    @Before
    void setUp() {
        h = new Harness()
        h.respond('build', BUILD_RESULT)
        h.respond('key', [key: 'pip-linux-x86_64-k1'])
    }

    @After
    void tearDown() {
        h.cleanup()
    }

    Map build(Map args) {
        return Harness.assertSerializable(h.var('cachedDockerBuild').call(args))
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
                      '--cache-dir', '.pip-cache', '--report-html', '.cicache/app-7-report.html',
                      '--log', '.cicache/app-7.log', '.'], argv)
        assertEquals(7, r.steps.cached)
        assertEquals(9, r.steps.total)
        assertEquals('helper', r.cacheBackend)
        assertEquals('main', r.scope)
        assertEquals(BUILD_RESULT.verdict, h.currentBuild.description)
    }

    @Test
    void everyOptionBecomesItsFlagWithValuesQuotedForTheShell() {
        h.file('app/req.txt').with { parentFile.mkdirs(); text = 'x' }
        Map r = build(image: '123456789012.dkr.ecr.eu-north-1.amazonaws.com/rag-medical-repo',
            tags: ['abc123', 'latest'], dockerfile: 'docker/Dockerfile.prod', context: 'app',
            buildArgs: [PY: '3.12', NOTE: "it's \"quoted\" \$HOME `x`"], target: 'runtime',
            dockerArgs: ['--label', 'team=ml', '--secret', 'id=pip,src=/run/pip.conf'],
            cacheDir: 'build/pip cache', cacheKey: 'pip-{{ hashFiles "requirements*.txt" }}',
            restoreKeys: ['pip-', 'py-'], store: 's3://bucket/ci', strict: true, push: true, rebuild: true,
            registryCache: false, saveCache: false, logFile: 'out/build.log', reportFile: 'out/report.md')
        List<String> argv = buildCall()
        assertEquals(['--json', '--store', 's3://bucket/ci', '--scope', 'main', '--strict', 'build',
                      '--image', '123456789012.dkr.ecr.eu-north-1.amazonaws.com/rag-medical-repo',
                      '--tag', 'abc123', '--tag', 'latest', '-f', 'docker/Dockerfile.prod',
                      '--build-arg', 'PY=3.12', '--build-arg', "NOTE=it's \"quoted\" \$HOME `x`".toString(),
                      '--target', 'runtime', '--cache-dir', 'build/pip cache',
                      '--key', 'pip-{{ hashFiles "requirements*.txt" }}', '--restore-key', 'pip-', '--restore-key', 'py-',
                      '--no-save', '--no-registry-cache', '--push', '--rebuild',
                      '--report-html', '.cicache/rag-medical-repo-runtime-7-report.html', '--log', 'out/build.log',
                      'app',
                      '--', '--label', 'team=ml', '--secret', 'id=pip,src=/run/pip.conf'], argv)
        assertEquals('out/report.md', r.reportFile)
        // The command line is in the log once, as the user would type it.
        assertTrue(h.log.any { it.startsWith('cicache: ') && it.contains(" build --image 123456789012") })
    }

    /** Issue 23 item 5: a context that looks like a flag, and an agent's CICACHE_* variables, change nothing. */
    @Test
    void theAgentsEnvironmentCannotOverrideTheStepAndAContextIsNeverAFlag() {
        ['CICACHE_PUSH', 'CICACHE_REBUILD', 'CICACHE_NO_RESTORE', 'CICACHE_NO_SAVE', 'CICACHE_NO_REGISTRY_CACHE', 'CICACHE_STRICT'].each {
            h.env[it] = 'true'
        }
        h.env.CICACHE_TAGS = 'evil'
        h.env.CICACHE_SCOPE = 'main'
        h.env.CICACHE_FALLBACK_SCOPES = 'other'
        h.env.CICACHE_STORE = '/agent/store'
        // The stand-in records the CICACHE_* variables the helper sees.
        File script = new File(h.work, 'helper-env.sh')
        script.text = '#!/bin/sh\ncase " $* " in *" build "*) env | grep ^CICACHE_ | grep -v -e STANDIN -e CICACHE_BIN | sort > "$CICACHE_STANDIN_DIR/env" ;; esac\nexec "$CICACHE_STANDIN" "$@"\n'
        script.setExecutable(true)
        h.env.CICACHE_STANDIN = h.env.CICACHE_BIN
        h.env.CICACHE_BIN = script.path
        h.env.BRANCH_NAME = 'feature/x'
        build(image: 'reg/app', context: '--push', registryCache: true)
        List<String> argv = buildCall()
        assertEquals('./--push', argv[argv.indexOf('--log') + 2])
        assertEquals(argv.size(), argv.indexOf('--log') + 3)
        assertTrue(argv.contains('--registry-cache'))
        assertEquals(['CICACHE_STORE=/agent/store'], new File(h.standinDir, 'env').text.readLines())
    }

    /** Issue 23 item 7: cache problems can warn, mark the build UNSTABLE, or fail it. */
    @Test
    void cacheProblemsWarnMarkTheBuildUnstableOrFail() {
        h.respond('build', BUILD_RESULT + [warnings: ['save failed: s3://ci/x: AccessDenied']])
        build(image: 'reg/app')
        assertTrue(h.steps('unstable').isEmpty())
        assertFalse(buildCall().contains('--strict'))
        build(image: 'reg/app', cacheProblem: 'unstable')
        assertEquals(['cicache: the build of reg/app passed with cache problems: save failed: s3://ci/x: AccessDenied'], h.steps('unstable')*.args)
        assertEquals('UNSTABLE', h.currentBuild.result)
        assertFalse(h.helperCalls('build')[1].contains('--strict'))
        build(image: 'reg/app', cacheProblem: 'fail')
        assertTrue(h.helperCalls('build')[2].contains('--strict'))
        h.respond('build', BUILD_RESULT + [warnings: []])
        build(image: 'reg/app', cacheProblem: 'unstable')
        assertEquals(1, h.steps('unstable').size())
    }

    @Test
    void awsCredentialsAreBoundForTheStepOnly() {
        h.credentials['ci-aws'] = ['AKIAEXAMPLE', 'secret/key']
        build(image: '123456789012.dkr.ecr.eu-north-1.amazonaws.com/app', registryLogin: true, region: 'eu-north-1',
              awsCredentialsId: 'ci-aws')
        Map creds = h.steps('withCredentials')[0].args[0]
        assertEquals([kind: 'aws', credentialsId: 'ci-aws', accessKeyVariable: 'AWS_ACCESS_KEY_ID', secretKeyVariable: 'AWS_SECRET_ACCESS_KEY'], creds)
        ['cicache registry login', 'cicache build'].each { String label ->
            Map e = h.steps('sh').find { it.args.label == label }.args.env
            assertEquals(label, 'AKIAEXAMPLE', e.AWS_ACCESS_KEY_ID)
            assertEquals(label, 'eu-north-1', e.AWS_REGION)
        }
        String scripts = h.steps('sh').collect { it.args.script }.join('\n')
        assertFalse(scripts.contains('AKIAEXAMPLE') || scripts.contains('secret/key'))
    }

    @Test
    void logAndReportNamesArePerImageAndBuild() {
        h.env.BUILD_NUMBER = '12'
        Map r1 = build(image: 'registry.example.com:5000/team/api:latest')
        Map r2 = build(image: 'registry.example.com/team/worker', target: 'runtime')
        assertEquals('.cicache/api-12.log', r1.logFile)
        assertEquals('.cicache/api-12-report.md', r1.reportFile)
        assertEquals('.cicache/worker-runtime-12.log', r2.logFile)
        assertEquals(['.cicache/api-12.log', '.cicache/worker-runtime-12.log'], h.helperCalls('build').collect { values(it, '--log')[0] })
        assertEquals('my.log', build(image: 'reg/app', logFile: 'my.log').logFile)
    }

    @Test
    void registryCacheIsLeftToTheHelperUnlessGiven() {
        build(image: 'team/app')
        build(image: 'team/app', registryCache: false)
        List<List<String>> c = h.helperCalls('build')
        assertFalse(c[0].contains('--registry-cache') || c[0].contains('--no-registry-cache'))
        assertTrue(c[1].contains('--no-registry-cache'))
    }

    @Test
    void compressionIsPassedWhenGivenAndLeftToTheAgentOtherwise() {
        build(image: 'reg/app')
        build(image: 'reg/app', compression: 'zstd', compressionLevel: 3)
        List<List<String>> c = h.helperCalls('build')
        assertFalse(c[0].contains('--compression') || c[0].contains('--compression-level'))
        assertEquals(['zstd'], values(c[1], '--compression'))
        assertEquals(['3'], values(c[1], '--compression-level'))
        String msg = Harness.expectError { build(image: 'reg/app', compression: 'lz4') }
        assertTrue(msg, msg.contains('compression'))
    }

    @Test
    void pullRequestBuildSavesToItsOwnScopeAndFallsBackToTargetThenDefaultBranch() {
        h.env.CHANGE_ID = '42'
        h.env.CHANGE_TARGET = 'develop'
        h.env.BRANCH_NAME = 'PR-42'
        Map r = build(image: 'reg/app')
        List<String> argv = buildCall()
        assertEquals(['pr-42'], values(argv, '--scope'))
        assertEquals(['develop', 'main', 'master'], values(argv, '--fallback-scope'))
        assertEquals('pr-42', r.scope)
    }

    @Test
    void branchBuildFallsBackToTheDefaultBranchArgument() {
        h.env.BRANCH_NAME = 'feature/faster'
        build(image: 'reg/app', defaultBranch: 'trunk')
        List<String> argv = buildCall()
        assertEquals(['feature/faster'], values(argv, '--scope'))
        assertEquals(['trunk'], values(argv, '--fallback-scope'))
    }

    @Test
    void defaultBranchBuildHasNoFallbackScope() {
        h.env.BRANCH_NAME = 'main'
        build(image: 'reg/app')
        assertEquals([], values(buildCall(), '--fallback-scope'))
    }

    @Test
    void plainPipelineJobTakesTheScopeFromGitBranch() {
        h.env.remove('BRANCH_NAME')
        h.env.GIT_BRANCH = 'origin/release-2'
        build(image: 'reg/app')
        assertEquals(['release-2'], values(buildCall(), '--scope'))
        assertEquals(['main', 'master'], values(buildCall(), '--fallback-scope'))
    }

    /**
     * Issue 23 item 7: the default branch is not assumed to be 'main'. A build of the multibranch
     * project's primary branch (BRANCH_IS_PRIMARY) or of a conventional default ('main',
     * 'master') has no fallback scope, which makes the helper write IMAGE:cache.
     */
    @Test
    void theDefaultBranchComesFromThePrimaryBranchOrTheConventionalNames() {
        Closure fallbacks = { Map env, Map args = [:] ->
            h.calls.clear()
            new File(h.standinDir, 'calls').delete()
            h.env.remove('BRANCH_IS_PRIMARY')
            h.env.remove('CICACHE_DEFAULT_BRANCH')
            h.env.putAll(env)
            build([image: 'reg/app'] + args)
            values(buildCall(), '--fallback-scope')
        }
        assertEquals([], fallbacks([BRANCH_NAME: 'master']))
        assertEquals([], fallbacks([BRANCH_NAME: 'main']))
        assertEquals([], fallbacks([BRANCH_NAME: 'trunk', BRANCH_IS_PRIMARY: 'true']))
        assertEquals(['main', 'master'], fallbacks([BRANCH_NAME: 'feature/x']))
        assertEquals(['trunk'], fallbacks([BRANCH_NAME: 'feature/x', CICACHE_DEFAULT_BRANCH: 'trunk']))
        assertEquals(['develop'], fallbacks([BRANCH_NAME: 'master'], [defaultBranch: 'develop']))
        // Job Cacher takes one branch to seed a new branch's cache from.
        h.installCachePlugin('jobcacher')
        fallbacks([BRANCH_NAME: 'feature/x', CICACHE_DEFAULT_BRANCH: 'trunk'], [cachePlugin: 'jobcacher'])
        assertEquals('trunk', h.steps('cache')[0].args.defaultBranch)
        fallbacks([BRANCH_NAME: 'master'], [cachePlugin: 'jobcacher'])
        assertEquals('master', h.steps('cache')[0].args.defaultBranch)
    }

    @Test
    void explicitScopeWins() {
        h.env.CHANGE_ID = '7'
        build(image: 'reg/app', scope: 'nightly')
        assertEquals(['nightly'], values(buildCall(), '--scope'))
    }

    @Test
    void detectWithoutAPluginFallsBackToTheHelperWithOneLogLine() {
        h.installCachePlugin(null)
        Map r = build(image: 'reg/app', store: '/srv/cache', cachePlugin: 'detect')
        List<String> lines = h.log.findAll { it.contains("cacheBackend 'auto'") }
        assertEquals(1, lines.size())
        assertTrue(lines[0], lines[0].contains('no `cache` step is installed'))
        assertTrue(h.steps('cache').isEmpty())
        List<String> argv = buildCall()
        assertEquals(['/srv/cache'], values(argv, '--store'))
        assertFalse(argv.contains('--no-restore'))
        assertFalse(argv.contains('--no-save'))
        assertEquals('helper', r.cacheBackend)
    }

    @Test
    void detectedJobCacherKeepsTheCacheDirInThePluginAroundTheBuild() {
        h.installCachePlugin('jobcacher')
        Map r = build(image: 'reg/app', store: '/srv/cache', cacheDir: '.pip', cachePlugin: 'detect', maxCacheSize: '2GB')
        List<Map> cache = h.steps('cache')
        assertEquals('a restoring block around the build, then a saving one (no cache was restored)', 2, cache.size())
        Map restore = cache[0].args
        assertEquals([[symbol: 'arbitraryFileCache', args: [path: '.pip', cacheName: 'cicache-pip', compressionMethod: 'TAR_ZSTD']]],
            restore.caches)
        assertEquals('main', restore.defaultBranch)
        assertEquals(true, restore.skipSave)
        assertFalse('skipRestore only when asked (older Job Cacher lacks it)', restore.containsKey('skipRestore'))
        assertEquals(1908L, restore.maxCacheSize)
        // The build ran inside the first block, with the helper's own save/restore off.
        int first = h.log.indexOf('[cache plugin] restore')
        int buildLine = h.log.findIndexOf { it.startsWith('cicache: ') && it.contains(' build ') }
        assertTrue("order in ${h.log}", first >= 0 && first < buildLine)
        List<String> argv = buildCall()
        assertTrue(argv.containsAll(['--no-restore', '--no-save']))
        assertEquals([], values(argv, '--store'))
        assertEquals('plugin:jobcacher', r.cacheBackend)
        Map save = cache[1].args
        assertEquals([path: '.pip', cacheName: 'cicache-pip', compressionMethod: 'TAR_ZSTD',
                      cacheValidityDecidingFile: '.cicache/cicache-pip.key'], save.caches[0].args)
        assertFalse(save.containsKey('skipSave') || save.containsKey('skipRestore'))
        assertEquals('pip-linux-x86_64-k1', h.file('.cicache/cicache-pip.key').text)
        assertEquals('pip-linux-x86_64-k1', h.file('.pip/.cicache-key').text)
    }

    /**
     * Issue 23 item 2: with Job Cacher a requirements change (a new key) still restores the
     * previous cache, and saves under the new key; an unchanged key saves nothing.
     */
    @Test
    void jobCacherRestoresThePreviousCacheWhenTheKeyChangesAndSavesOnlyThen() {
        h.installCachePlugin('jobcacher')
        // What Job Cacher does with the arguments it gets: it keeps the saved cache dir and its
        // validity file's content, and restores only an up-to-date cache.
        Map stored = [:]
        h.binding.setVariable('cache', { Map a, Closure body ->
            h.record('cache', a)
            Map c = a.caches[0].args
            File dir = h.file(c.path)
            String validity = c.cacheValidityDecidingFile ? h.file(c.cacheValidityDecidingFile).text : null
            boolean upToDate = stored.files != null && (validity == null || validity == stored.validity)
            if (upToDate && !a.skipRestore) {
                dir.deleteDir()
                dir.mkdirs()
                stored.files.each { String n, String t -> new File(dir, n).text = t }
                h.log.add('[cache plugin] restored')
            }
            body.call()
            if (!upToDate && !a.skipSave) {
                stored.files = dir.listFiles().collectEntries { [it.name, it.text] }
                stored.validity = validity
                h.log.add('[cache plugin] saved')
            }
        })
        h.file('.pip-cache').mkdirs()
        h.file('.pip-cache/wheel-a').text = 'a'
        build(image: 'reg/app', cachePlugin: 'jobcacher')
        assertEquals(1, h.log.count { it == '[cache plugin] saved' })

        // Same key on a fresh workspace: restored, nothing saved.
        h.log.clear()
        h.file('.pip-cache').deleteDir()
        build(image: 'reg/app', cachePlugin: 'jobcacher')
        assertEquals('a', h.file('.pip-cache/wheel-a').text)
        assertEquals(['[cache plugin] restored'], h.log.findAll { it == '[cache plugin] restored' || it == '[cache plugin] saved' })
        assertTrue(h.log.any { it.contains('the cache of key pip-linux-x86_64-k1 is unchanged; not saving it again') })

        // requirements.txt changed: a new key. The previous cache is restored all the same, and the result saved.
        h.log.clear()
        h.file('.pip-cache').deleteDir()
        h.respond('key', [key: 'pip-linux-x86_64-k2'])
        build(image: 'reg/app', cachePlugin: 'jobcacher')
        assertEquals(1, h.log.count { it == '[cache plugin] restored' })
        assertEquals(1, h.log.count { it == '[cache plugin] saved' })
        assertTrue(h.log.any { it.contains('saving the cache under key pip-linux-x86_64-k2 (restored: pip-linux-x86_64-k1)') })
        assertEquals('pip-linux-x86_64-k2', stored.files['.cicache-key'])
        assertEquals('a', stored.files['wheel-a'])
    }

    @Test
    void jobCacherWithTheUsersValidityFileAndSaveCacheFalse() {
        h.installCachePlugin('jobcacher')
        build(image: 'reg/app', saveCache: false, cacheValidityFile: 'requirements*.txt', cachePlugin: 'jobcacher')
        assertEquals(1, h.steps('cache').size())
        Map args = h.steps('cache')[0].args
        assertEquals(true, args.skipSave)
        assertFalse(args.containsKey('skipRestore'))
        assertEquals([path: '.pip-cache', compressionMethod: 'TAR_ZSTD', cacheValidityDecidingFile: 'requirements*.txt'], args.caches[0].args)
        h.calls.clear()
        build(image: 'reg/app', saveCache: false, cachePlugin: 'jobcacher')
        assertEquals('no saving block', 1, h.steps('cache').size())
        assertEquals(true, h.steps('cache')[0].args.skipSave)
    }

    @Test
    void detectedS3PipelineCachePluginUsesItsPathKeySignature() {
        h.installCachePlugin('pipeline-cache')
        h.respond('key', [key: 'pip-linux-x86_64-0123abcd'])
        Map r = build(image: 'reg/app', cacheKey: 'pip-{{ hashFiles "requirements*.txt" }}', restoreKeys: ['pip-'], cachePlugin: 'detect')
        assertEquals([['--json', 'key', '--', 'pip-{{ hashFiles "requirements*.txt" }}']], h.helperCalls('key'))
        assertEquals([[path: '.pip-cache', key: 'pip-linux-x86_64-0123abcd', restoreKeys: ['pip-']]], h.steps('cache')*.args)
        assertTrue(buildCall().containsAll(['--no-restore', '--no-save']))
        assertEquals('plugin:jenkins-pipeline-cache', r.cacheBackend)
    }

    @Test
    void pipelineCachePluginGetsTheHelpersDefaultKeysRenderedWhenNoneAreGiven() {
        h.installCachePlugin('pipeline-cache')
        h.respond('key', [key: 'rendered'])
        build(image: 'reg/app', cachePlugin: 'pipeline-cache')
        assertEquals(['pip-{{ os }}-{{ arch }}-{{ hashFiles "**/requirements*.txt" }}', 'pip-{{ os }}-{{ arch }}-'],
            h.helperCalls('key').collect { it[3] })
        assertEquals([path: '.pip-cache', key: 'rendered', restoreKeys: ['rendered']], h.steps('cache')[0].args)
    }

    /** Issue 23 item 3: a sandboxed library must not look anything up unless asked (each refusal queues a script approval). */
    @Test
    void autoLooksNoPluginUpUnlessAskedAndTakesANamedOneWithoutALookup() {
        h.installCachePlugin('refused')
        Map r = build(image: 'reg/app')
        assertEquals(0, StepDescriptor.lookups)
        assertEquals('helper', r.cacheBackend)
        assertTrue(h.steps('cache').isEmpty())
        assertFalse(h.log.any { it.contains("cacheBackend 'auto'") })
        // An administrator names the plugin for every build (global environment): still no lookup.
        h.env.CICACHE_CACHE_PLUGIN = 'jobcacher'
        assertEquals('plugin:jobcacher', build(image: 'reg/app').cacheBackend)
        assertEquals(0, StepDescriptor.lookups)
        h.env.CICACHE_CACHE_PLUGIN = 'jobcache'
        String msg = Harness.expectError { build(image: 'reg/app') }
        assertTrue(msg, msg.contains("CICACHE_CACHE_PLUGIN is 'jobcache'; it must be one of 'detect', 'jobcacher', 'jenkins-pipeline-cache', 'pipeline-cache'"))
    }

    @Test
    void pluginBackendWithoutAPluginFailsNamingThePlugins() {
        h.installCachePlugin(null)
        String msg = Harness.expectError { build(image: 'reg/app', cacheBackend: 'plugin') }
        assertTrue(msg, msg.contains("cacheBackend 'plugin' needs the Job Cacher plugin (jobcacher) or the Pipeline Cache plugin (jenkins-pipeline-cache)"))
        assertTrue(h.helperCalls('build').isEmpty())
    }

    @Test
    void pluginBackendWithJobCacherUsesIt() {
        h.installCachePlugin('jobcacher')
        assertEquals('plugin:jobcacher', build(image: 'reg/app', cacheBackend: 'plugin').cacheBackend)
        assertEquals(2, h.steps('cache').size())
    }

    @Test
    void helperBackendIgnoresAnInstalledPluginAndDoesNotLookItUp() {
        h.installCachePlugin('jobcacher')
        Map r = build(image: 'reg/app', cacheBackend: 'helper')
        assertTrue(h.steps('cache').isEmpty())
        assertEquals(0, StepDescriptor.lookups)
        assertFalse(buildCall().contains('--no-restore'))
        assertEquals('helper', r.cacheBackend)
    }

    @Test
    void helperBackendWithoutPluginWorks() {
        h.installCachePlugin(null)
        assertEquals('helper', build(image: 'reg/app', cacheBackend: 'helper').cacheBackend)
        assertFalse(h.log.any { it.contains("cacheBackend 'auto'") })
    }

    @Test
    void noneBackendOnlyDoesTheBuildKitDance() {
        h.installCachePlugin('jobcacher')
        Map r = build(image: 'reg/app', cacheBackend: 'none', store: '/srv/cache')
        assertTrue(h.steps('cache').isEmpty())
        List<String> argv = buildCall()
        assertTrue(argv.containsAll(['--no-restore', '--no-save']))
        assertEquals([], values(argv, '--store'))
        assertEquals('none', r.cacheBackend)
    }

    @Test
    void anotherPluginsCacheStepIsNotCalledWithTheWrongSignature() {
        h.installCachePlugin('other')
        build(image: 'reg/app', cachePlugin: 'detect')
        assertTrue(h.steps('cache').isEmpty())
        assertTrue(h.log.any { it.contains("cacheBackend 'auto'") && it.contains('unsupported plugin (java.util.ArrayList)') })
        String msg = Harness.expectError { build(image: 'reg/app', cacheBackend: 'plugin') }
        assertTrue(msg, msg.contains('unsupported plugin'))
    }

    @Test
    void aRefusedLookupFallsBackUnderAutoAndCachePluginNamesThePlugin() {
        h.installCachePlugin('refused')
        build(image: 'reg/app', cachePlugin: 'detect')
        assertTrue(h.steps('cache').isEmpty())
        assertTrue(h.log.any { it.contains("cacheBackend 'auto'") && it.contains('the lookup needs a trusted global library') })
        Map r = build(image: 'reg/app', cachePlugin: 'jobcacher')
        assertEquals('plugin:jobcacher', r.cacheBackend)
        assertEquals(2, h.steps('cache').size())
    }

    @Test
    void failedBuildFailsTheStepWithTheHelpersErrorAndStillDescribesTheBuild() {
        h.respond('build', [ok: false, error: 'docker build failed at step 4/9: RUN pip install', verdict: 'cache: 3/9 steps cached'], 1)
        String msg = Harness.expectError { build(image: 'reg/app') }
        assertTrue(msg, msg.contains('cicache build of reg/app failed (exit code 1): docker build failed at step 4/9'))
        assertEquals('cache: 3/9 steps cached', h.currentBuild.description)
    }

    @Test
    void outputThatIsNotJsonIsAClearError() {
        h.respondText('build', 'Segmentation fault\n', 139)
        String msg = Harness.expectError { build(image: 'reg/app') }
        assertTrue(msg, msg.contains('exit code 139') && msg.contains('no JSON result'))
    }

    @Test
    void usageErrorSaysTheVersionsMayDiffer() {
        h.respondText('build', '', 2)
        String msg = Harness.expectError { build(image: 'reg/app') }
        assertTrue(msg, msg.contains('bad usage; the library and the helper may be different versions'))
    }

    @Test
    void descriptionIsAppendedAndReportIsArchivedOnRequest() {
        h.currentBuild.description = 'deploy to staging'
        helperWritesReport('# cache: 7/9 steps cached\n\n| step | time |\n')
        build(image: 'reg/app', archiveReport: true)
        assertEquals("deploy to staging\n${BUILD_RESULT.verdict}".toString(), h.currentBuild.description)
        assertEquals([[artifacts: '.cicache/app-7-report.md', allowEmptyArchive: true]], h.steps('archiveArtifacts')*.args)
    }

    /** Makes the stand-in helper write the build's --log and answer `report LOG --format markdown` with TEXT, as the real one does. */
    void helperWritesReport(String text) {
        File script = new File(h.work, 'helper-with-report.sh')
        script.text = '''#!/bin/sh
prev=
for a in "$@"; do
  if [ "$prev" = --log ]; then : > "$a"; fi
  prev=$a
done
case " $* " in
  *" report "*"--format markdown"*) cat "$CICACHE_REPORT_SOURCE"; exit 0 ;;
esac
exec "$CICACHE_STANDIN" "$@"
'''
        script.setExecutable(true)
        h.file('report-source.md').text = text
        h.env.CICACHE_REPORT_SOURCE = h.file('report-source.md').path
        h.env.CICACHE_STANDIN = h.env.CICACHE_BIN
        h.env.CICACHE_BIN = script.path
    }

    @Test
    void descriptionComesFromTheReportsFirstLineWhenTheResultHasNoVerdict() {
        h.respond('build', [ok: true, steps: [cached: 1, total: 2]])
        helperWritesReport('\n## cache: 1/2 steps cached, build 12s\nmore\n')
        build(image: 'reg/app', archiveReport: true)
        assertEquals('cache: 1/2 steps cached, build 12s', h.currentBuild.description)
        assertEquals(1, h.steps('archiveArtifacts').size())
        build(image: 'reg/app', setDescription: false)
        assertEquals('cache: 1/2 steps cached, build 12s', h.currentBuild.description)
    }

    @Test
    void aReportLeftByAnEarlierBuildIsNeitherUsedNorArchived() {
        h.respond('build', [ok: true, steps: [cached: 0, total: 2]])
        h.file('.cicache/app-7-report.md').with { parentFile.mkdirs(); text = '# cache: 2/2 steps cached (an old build)\n' }
        build(image: 'reg/app', archiveReport: true)
        assertNull(h.currentBuild.description)
        assertTrue(h.steps('archiveArtifacts').isEmpty())
        assertEquals('', h.file('.cicache/app-7-report.md').text)
    }

    @Test
    void missingMarkdownReportIsMadeFromTheLog() {
        h.respond('build', [ok: true])
        h.file('.cicache/app-7.log').with { parentFile.mkdirs(); text = '#5 CACHED\n' }
        h.respondText('report', '**cache: 1/1 steps cached, build 3.1s**\n\n| step | result |\n')
        build(image: 'reg/app')
        assertEquals([['report', '--format', 'markdown', '--', '.cicache/app-7.log']], h.helperCalls('report'))
        assertEquals('**cache: 1/1 steps cached, build 3.1s**\n\n| step | result |\n', h.file('.cicache/app-7-report.md').text)
        assertEquals('cache: 1/1 steps cached, build 3.1s', h.currentBuild.description)
    }

    @Test
    void registryCredentialsReachTheHelperOnStdinAndNeverTheLogOrTheScript() {
        h.credentials['registry-robot'] = ['robot$ci', 'pa55 w0rd\'"$secret']
        build(image: '127.0.0.1:5000/app', registryCredentialsId: 'registry-robot', push: true)
        List<List<String>> login = h.helperCalls('registry')
        assertEquals([['--json', 'registry', 'login', '--image', '127.0.0.1:5000/app', '--username', 'robot$ci', '--password-stdin']], login)
        assertEquals('pa55 w0rd\'"$secret', h.stdinOf('registry-login'))
        // Login comes before the build.
        assertEquals('registry', Harness.commandOf(h.helperCalls()[0]))
        String everything = (h.log + h.steps('sh').collect { it.args.script } + h.steps('echo')*.args).join('\n')
        assertFalse(everything.contains('pa55'))
        assertFalse(everything.contains('robot$ci'))
    }

    /** Issue 23 item 4: a login never outlives the step (a static agent's next job would push with it). */
    @Test
    void registryLoginsGoToAPrivateDockerConfigThatIsDeletedWhenTheStepEnds() {
        // What `docker login` does: write the auth into $DOCKER_CONFIG/config.json (default ~/.docker).
        File script = new File(h.work, 'helper-login.sh')
        script.text = '''#!/bin/sh
conf=${DOCKER_CONFIG:-$HOME/.docker}
case " $* " in
  *" registry login "*) mkdir -p "$conf"; echo '{"auths":{"reg":{"auth":"c2VjcmV0"}}}' > "$conf/config.json" ;;
  *" build "*) if [ -L "$conf/cli-plugins" ] && [ -f "$conf/config.json" ]; then : > "$CICACHE_STANDIN_DIR/build-saw-login-and-plugins"; fi ;;
esac
exec "$CICACHE_STANDIN" "$@"
'''
        script.setExecutable(true)
        h.env.CICACHE_STANDIN = h.env.CICACHE_BIN
        h.env.CICACHE_BIN = script.path
        new File(h.work, '.docker/cli-plugins').mkdirs()
        h.credentials['robot'] = ['robot', 'secret']

        build(image: 'reg/app', registryCredentialsId: 'robot')
        Map loginSh = h.steps('sh').find { it.args.label == 'cicache registry login' }
        Map buildSh = h.steps('sh').find { it.args.label == 'cicache build' }
        String dir = loginSh.args.env.DOCKER_CONFIG
        assertTrue(dir, dir.startsWith(h.workspace.path + '@tmp/cicache-docker-config.'))
        assertEquals(dir, buildSh.args.env.DOCKER_CONFIG)
        assertTrue('the build saw the login and the agent\'s cli-plugins', new File(h.standinDir, 'build-saw-login-and-plugins').exists())
        assertFalse("${dir} outlived the step", new File(dir).exists())
        assertFalse(new File(h.work, '.docker/config.json').exists())
        assertTrue('the agent\'s cli-plugins are untouched', new File(h.work, '.docker/cli-plugins').isDirectory())

        // Removed when the build fails too.
        h.calls.clear()
        h.respond('build', [ok: false, error: 'push denied'], 1)
        Harness.expectError { build(image: 'reg/app', registryLogin: true) }
        String dir2 = h.steps('sh').find { it.args.label == 'cicache build' }.args.env.DOCKER_CONFIG
        assertTrue(dir2 != null && dir2 != dir)
        assertFalse(new File(dir2).exists())
        assertFalse(new File(h.work, '.docker/config.json').exists())

        // Without a login the agent's own docker config is used.
        h.calls.clear()
        h.respond('build', BUILD_RESULT)
        build(image: 'reg/app')
        assertNull(h.steps('sh').find { it.args.label == 'cicache build' }.args.env.DOCKER_CONFIG)
    }

    @Test
    void registryLoginWithoutCredentialsUsesTheAmbientOnesAndRegionGoesToTheEnvironment() {
        build(image: '123456789012.dkr.ecr.eu-north-1.amazonaws.com/app', registryLogin: true, region: 'eu-north-1')
        assertEquals([['--json', 'registry', 'login', '--image', '123456789012.dkr.ecr.eu-north-1.amazonaws.com/app']], h.helperCalls('registry'))
        Map buildSh = h.steps('sh').find { it.args.label == 'cicache build' }
        assertEquals('eu-north-1', buildSh.args.env.AWS_REGION)
        assertEquals('eu-north-1', buildSh.args.env.AWS_DEFAULT_REGION)
    }

    @Test
    void failedLoginStopsBeforeTheBuild() {
        h.respond('registry-login', [ok: false, error: 'no basic auth credentials'], 1)
        String msg = Harness.expectError { build(image: 'reg/app', registryLogin: true) }
        assertTrue(msg, msg.contains('registry login for reg/app failed (exit code 1): no basic auth credentials'))
        assertTrue(h.helperCalls('build').isEmpty())
    }

    @Test
    void badArgumentsNameTheArgumentAndTheAcceptedValues() {
        Map cases = [
            ([:])                                      : "argument 'image' is required",
            ([image: ''])                              : "argument 'image' must not be empty",
            ([image: 'r', imgae: 'x'])                 : "unknown argument 'imgae' (did you mean 'image'?). Accepted arguments: archiveReport, awsCredentialsId, baseBuildArgs, baseDockerfile, baseInputs, buildArgs,",
            ([image: 'r', tags: 'latest'])             : "argument 'tags' must be a list of strings",
            ([image: 'r', tags: ['a', 1]])             : "argument 'tags' must be a list of strings; it holds the number 1",
            ([image: 'r', buildArgs: ['A=1']])         : "argument 'buildArgs' must be a map of strings",
            ([image: 'r', cacheBackend: 'sometimes'])  : "argument 'cacheBackend' must be one of 'auto', 'plugin', 'helper', 'none' (got 'sometimes')",
            ([image: 'r', cachePlugin: 'gradle'])      : "argument 'cachePlugin' must be one of 'detect', 'jobcacher', 'jenkins-pipeline-cache', 'pipeline-cache'",
            ([image: 'r', push: 'yes'])                : "argument 'push' must be true or false (got the string 'yes')",
            ([image: ['r']])                           : "argument 'image' must be a string",
        ]
        cases.each { Map args, String expected ->
            String msg = Harness.expectError { build(args) }
            assertTrue("${args}: ${msg}", msg.startsWith('cachedDockerBuild: '))
            assertTrue("${args}: ${msg}", msg.contains(expected))
        }
        String msg = Harness.expectError { h.var('cachedDockerBuild').call('reg/app') }
        assertTrue(msg, msg.contains("cachedDockerBuild: expected named arguments, e.g. cachedDockerBuild(image: ...)"))
        assertTrue('no helper call for bad arguments', h.helperCalls().isEmpty())
    }

    @Test
    void gStringArgumentsAreAccepted() {
        String sha = 'abc123'
        build(image: "reg/${'app'}", tags: ["${sha}", 'latest'], buildArgs: [REV: "${sha}"])
        List<String> argv = buildCall()
        assertEquals(['abc123', 'latest'], values(argv, '--tag'))
        assertEquals(['REV=abc123'], values(argv, '--build-arg'))
    }

    @Test
    void restoreCacheFalseSkipsTheRestoreInEveryBackend() {
        build(image: 'reg/app', cacheBackend: 'helper', restoreCache: false)
        List<String> argv = buildCall()
        assertTrue(argv.contains('--no-restore'))
        assertFalse(argv.contains('--no-save'))
        h.installCachePlugin('jobcacher')
        build(image: 'reg/app', restoreCache: false, cachePlugin: 'jobcacher')
        assertEquals(true, h.steps('cache')[0].args.skipRestore)
    }

    @Test
    void theS3PluginIsNotUsedWhenItCannotSkipASaveThatWasSwitchedOff() {
        h.installCachePlugin('pipeline-cache')
        Map r = build(image: 'reg/app', saveCache: false, cachePlugin: 'detect')
        assertEquals('helper', r.cacheBackend)
        assertTrue(h.steps('cache').isEmpty())
        assertEquals(1, h.log.count { it.contains("cacheBackend 'auto'") && it.contains('cannot skip its restore or save') })
        assertTrue(buildCall().contains('--no-save'))
        String msg = Harness.expectError { build(image: 'reg/app', saveCache: false, cacheBackend: 'plugin') }
        assertTrue(msg, msg.contains("cacheBackend 'plugin': the Pipeline Cache plugin (jenkins-pipeline-cache) cannot skip"))
    }

    @Test
    void aNestedReportIsLiftedToTheDocumentedShape() {
        h.respond('build', [ok: true, report: [steps: [cached: 2, total: 3], verdict: 'cache: 2/3 steps cached']])
        Map r = build(image: 'reg/app')
        assertEquals([cached: 2, total: 3], r.steps)
        assertEquals('cache: 2/3 steps cached', r.verdict)
        assertEquals('cache: 2/3 steps cached', h.currentBuild.description)
    }

    /** Issue 24: the HTML report on the build page, with the HTML Publisher plugin. */
    @Test
    void theHtmlReportIsPublishedWithTheHtmlPublisherPlugin() {
        new File(h.standinDir, 'report.html').text = '<html>report</html>'
        List<Map> published = []
        h.binding.setVariable('publishHTML', { Map m -> published.add(m) })
        Map r = build(image: 'registry.example.com/team/app')
        assertEquals(1, published.size())
        assertEquals('.cicache', published[0].reportDir)
        assertEquals('app-7-report.html', published[0].reportFiles)
        assertEquals('Cache report', published[0].reportName)
        assertEquals('.cicache/app-7-report.html', r.htmlReportFile)
        assertEquals(BUILD_RESULT.verdict, h.currentBuild.description)
    }

    /** Issue 24: without the plugin the report is archived and the description links it. */
    @Test
    void withoutTheHtmlPublisherTheReportIsArchivedAndLinked() {
        new File(h.standinDir, 'report.html').text = '<html>report</html>'
        h.env.BUILD_URL = 'https://jenkins.example.com/job/app/7/'
        Map r = build(image: 'registry.example.com/team/app')
        assertTrue(h.steps('archiveArtifacts').any { it.args.artifacts == '.cicache/app-7-report.html' })
        assertTrue(h.currentBuild.description.toString().contains(
            'cache report: https://jenkins.example.com/job/app/7/artifact/.cicache/app-7-report.html'))
        assertEquals('.cicache/app-7-report.html', r.htmlReportFile)
    }

    /** htmlReport: false asks the helper for no HTML report. */
    @Test
    void htmlReportFalseAsksForNone() {
        build(image: 'registry.example.com/team/app', htmlReport: false)
        assertFalse(buildCall().contains('--report-html'))
    }
}
