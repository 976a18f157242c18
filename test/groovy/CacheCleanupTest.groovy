import org.junit.After
import org.junit.Before
import org.junit.Test

import static org.junit.Assert.*

class CacheCleanupTest {
    Harness h

    @Before
    void setUp() {
        h = new Harness()
        h.env.CICACHE_STORE = 's3://bucket/ci'
        h.respond('prune', [ok: true, removed: 3])
        h.respond('docker-prune', [ok: true, freed_bytes: 1024])
        h.respond('registry-gc', [ok: true, deleted: ['cache-feature-x']])
    }

    @After
    void tearDown() {
        h.cleanup()
    }

    Map cleanup(Map args = [:]) {
        return Harness.assertSerializable(h.var('cacheCleanup').call(args))
    }

    @Test
    void withoutANamedStoreTheStorePruneIsSkippedNotTheDefaultDirectory() {
        h.env.remove('CICACHE_STORE')
        Map r = cleanup()
        assertEquals([['--json', 'docker', 'prune', '--keep-storage', '20GB', '--until', '72h']], h.helperCalls())
        assertEquals(true, r.store.skipped)
        assertTrue(h.log.any { it.contains('no store named') })
    }

    @Test
    void defaultsPruneTheStoreAndTheBuilderCache() {
        Map r = cleanup()
        assertEquals([['--json', 'prune', '--max-age', '14d', '--max-unused', '7d'],
                      ['--json', 'docker', 'prune', '--keep-storage', '20GB', '--until', '72h']], h.helperCalls())
        assertEquals(3, r.store.removed)
        assertEquals(1024, r.docker.freed_bytes)
        assertEquals([:], r.registry)
    }

    @Test
    void everyOptionWithRegistryGcAndDryRun() {
        Map r = cleanup(store: 's3://bucket/ci', maxAge: '30d', maxUnused: '10d', maxSize: '50GB', keepLast: 2,
            keepStorage: '10GB', until: '24h', cacheMounts: true,
            images: ['reg/a', '123456789012.dkr.ecr.eu-north-1.amazonaws.com/b'], registryMaxAge: '7d',
            keepTags: ['cache', 'cache-release'], untagged: true, region: 'eu-north-1', dryRun: true)
        assertEquals([['--json', '--store', 's3://bucket/ci', 'prune', '--max-age', '30d', '--max-unused', '10d', '--max-size', '50GB', '--keep-last', '2', '--dry-run'],
                      ['--json', 'docker', 'prune', '--keep-storage', '10GB', '--until', '24h', '--cache-mounts', '--dry-run'],
                      ['--json', 'registry', 'gc', '--image', 'reg/a', '--max-age', '7d', '--keep', 'cache', '--keep', 'cache-release', '--untagged', '--dry-run'],
                      ['--json', 'registry', 'gc', '--image', '123456789012.dkr.ecr.eu-north-1.amazonaws.com/b', '--max-age', '7d', '--keep', 'cache', '--keep', 'cache-release', '--untagged', '--dry-run']],
            h.helperCalls())
        assertEquals(['cache-feature-x'], r.registry['reg/a'].deleted)
        assertTrue(h.steps('sh').findAll { it.args.label?.startsWith('cicache ') && it.args.label != 'cicache: check CICACHE_BIN' }
            .every { it.args.env.AWS_REGION == 'eu-north-1' })
    }

    @Test
    void awsCredentialsAreBoundForTheCleanup() {
        h.credentials['ci-aws'] = ['AKIAEXAMPLE', 'secret/key']
        cleanup(images: ['123456789012.dkr.ecr.eu-north-1.amazonaws.com/b'], awsCredentialsId: 'ci-aws', region: 'eu-north-1')
        assertEquals('aws', h.steps('withCredentials')[0].args[0].kind)
        List<Map> helperSh = h.steps('sh').findAll { it.args.label?.startsWith('cicache ') && !it.args.label.startsWith('cicache: ') }
        assertEquals(3, helperSh.size())
        assertTrue(helperSh.every { it.args.env.AWS_ACCESS_KEY_ID == 'AKIAEXAMPLE' && it.args.env.AWS_SECRET_ACCESS_KEY == 'secret/key' })
        assertFalse(h.steps('sh').any { it.args.script.contains('AKIAEXAMPLE') })
    }

    @Test
    void partsCanBeSwitchedOff() {
        cleanup(storePrune: false, builderPrune: false, images: ['reg/a'])
        assertEquals(['registry'], h.helperCalls().collect { Harness.commandOf(it) })
        String msg = Harness.expectError { cleanup(storePrune: false, builderPrune: false) }
        assertTrue(msg, msg.contains('nothing to do'))
    }

    @Test
    void aFailingPartDoesNotStopTheOthersAndTheStepFailsNamingIt() {
        h.respond('prune', [ok: false, error: 'store /srv/c is locked'], 1)
        h.respond('registry-gc', [ok: false, error: 'repository reg/b not found'], 1)
        String msg = Harness.expectError { cleanup(images: ['reg/b']) }
        assertEquals(['prune', 'docker', 'registry'], h.helperCalls().collect { Harness.commandOf(it) })
        assertTrue(msg, msg.startsWith('cacheCleanup: 2 part(s) failed:'))
        assertTrue(msg, msg.contains('store prune failed (exit code 1): store /srv/c is locked'))
        assertTrue(msg, msg.contains('registry gc of reg/b failed (exit code 1): repository reg/b not found'))
    }

    @Test
    void badArguments() {
        Map cases = [
            ([maxAge: 14])            : "cacheCleanup: argument 'maxAge' must be a duration such as '14d'",
            ([images: 'reg/a'])       : "cacheCleanup: argument 'images' must be a list of strings",
            ([dryrun: true])          : "cacheCleanup: unknown argument 'dryrun' (did you mean 'dryRun'?)",
            ([keepStorage: '20 gigs']): "cacheCleanup: argument 'keepStorage' must be a size",
        ]
        cases.each { Map args, String expected ->
            String msg = Harness.expectError { cleanup(args) }
            assertTrue("${args}: ${msg}", msg.contains(expected))
        }
        assertTrue(h.helperCalls().isEmpty())
    }
}
