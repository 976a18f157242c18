// The scheduled cleanup job: store prune, builder prune, registry gc, each with its limits
// and dryRun. Every part runs even when an earlier one fails; the step fails at the end
// naming each part that failed. See cacheCleanup.txt and
// resources/io/cicache/cache-cleanup.Jenkinsfile.
import io.cicache.Args
import io.cicache.Aws
import io.cicache.Cli

private Map spec() {
    return [
        // store prune
        store         : [type: 'string'],
        storePrune    : [type: 'boolean', default: true],
        maxAge        : [type: 'duration', default: '14d'],
        maxUnused     : [type: 'duration', default: '7d'],
        maxSize       : [type: 'size'],
        keepLast      : [type: 'integer'],
        // docker builder prune on this agent
        builderPrune  : [type: 'boolean', default: true],
        keepStorage   : [type: 'size', default: '20GB'],
        until         : [type: 'duration', default: '72h'],
        cacheMounts   : [type: 'boolean', default: false],
        // registry cache tags
        images        : [type: 'list', default: []],
        registryMaxAge: [type: 'duration', default: '14d'],
        keepTags      : [type: 'list', default: ['cache']],
        untagged      : [type: 'boolean', default: false],
        region        : [type: 'string', nonEmpty: true],
        awsCredentialsId: [type: 'string', nonEmpty: true],
        dryRun        : [type: 'boolean', default: false],
    ]
}

def call(Object args = null) {
    Map r = Args.check('cacheCleanup', args, spec())
    if (r.error) {
        error(r.error)
    }
    Map a = r.args
    if (!a.storePrune && !a.builderPrune && a.images.isEmpty()) {
        error("cacheCleanup: nothing to do: storePrune and builderPrune are false and 'images' is empty")
    }
    return Aws.with(this, a.region, a.awsCredentialsId) {
        cleanup(a)
    }
}

private Map cleanup(Map a) {
    String bin = cicache.install()
    Map results = [store: null, docker: null, registry: [:]]
    List<String> failed = []

    if (a.storePrune && !a.store && !env.CICACHE_STORE) {
        // cicache prunes only a store it is told to: the agent's default directory may be
        // shared with other jobs' caches.
        echo('cacheCleanup: no store named (store: or CICACHE_STORE): the store prune is skipped')
        results.store = [skipped: true, reason: 'no store named (store: or CICACHE_STORE)']
    } else if (a.storePrune) {
        List<String> cmd = Cli.globalArgs(a.store, null, false) + ['prune', '--max-age', a.maxAge, '--max-unused', a.maxUnused]
        if (a.maxSize) {
            cmd.addAll(['--max-size', a.maxSize])
        }
        if (a.keepLast != null) {
            cmd.addAll(['--keep-last', a.keepLast.toString()])
        }
        if (a.dryRun) {
            cmd.add('--dry-run')
        }
        Map r = Cli.exec(this, bin, cmd, [label: 'cicache prune'])
        results.store = r.result
        if (r.exitCode != 0 || r.result == null) {
            failed.add(Cli.failure('store prune', r))
        }
    }
    if (a.builderPrune) {
        List<String> cmd = ['docker', 'prune', '--keep-storage', a.keepStorage, '--until', a.until]
        if (a.cacheMounts) {
            cmd.add('--cache-mounts')
        }
        if (a.dryRun) {
            cmd.add('--dry-run')
        }
        Map r = Cli.exec(this, bin, cmd, [label: 'cicache docker prune'])
        results.docker = r.result
        if (r.exitCode != 0 || r.result == null) {
            failed.add(Cli.failure('builder prune', r))
        }
    }
    for (String image : a.images) {
        List<String> cmd = ['registry', 'gc', '--image', image, '--max-age', a.registryMaxAge]
        for (String k : a.keepTags) {
            cmd.addAll(['--keep', k])
        }
        if (a.untagged) {
            cmd.add('--untagged')
        }
        if (a.dryRun) {
            cmd.add('--dry-run')
        }
        Map r = Cli.exec(this, bin, cmd, [label: "cicache registry gc ${image}".toString()])
        results.registry[image] = r.result
        if (r.exitCode != 0 || r.result == null) {
            failed.add(Cli.failure("registry gc of ${image}", r))
        }
    }
    if (failed) {
        error("cacheCleanup: ${failed.size()} part(s) failed:\n  " + failed.join('\n  '))
    }
    return results
}
