package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/**
 * A private DOCKER_CONFIG for the registry logins of one step, so that a login never outlives
 * the step: on a static agent the next job (any job) would otherwise push with the robot
 * account stored in ~/.docker/config.json. The directory lives in the workspace's temp dir
 * (mode 700), starts empty (nothing of the agent's config is copied: no auths, no credsStore,
 * which would move the login into the agent's credential store) except a link to the agent's
 * cli-plugins (buildx), and is deleted when the step ends, also when it fails.
 */
class DockerConfig implements Serializable {
    private static final long serialVersionUID = 1L

    static final String MARKER = 'cicache-docker-config: '

    /** Creates the directory on the agent; returns its path. */
    static String create(def steps) {
        String tmp = steps.env.WORKSPACE_TMP ?: (steps.env.WORKSPACE ? "${steps.env.WORKSPACE}@tmp" : steps.pwd(tmp: true))
        String out = steps.sh(script: createScript(tmp.toString()), returnStdout: true, label: 'cicache: private DOCKER_CONFIG')
        String dir = parse(out)
        if (dir == null) {
            steps.error("cicache: could not create a private DOCKER_CONFIG under ${tmp} for the registry login: ${out?.trim()}")
        }
        return dir
    }

    /** Deletes the directory and the logins in it. */
    static void remove(def steps, String dir) {
        steps.sh(script: removeScript(dir), label: 'cicache: remove the private DOCKER_CONFIG')
    }

    @NonCPS
    static String createScript(String tmp) {
        return """#!/bin/sh
set -e
base=${Shell.quote(tmp)}
mkdir -p "\$base"
dir=\$(mktemp -d "\$base/cicache-docker-config.XXXXXX")
chmod 700 "\$dir"
plugins="\${DOCKER_CONFIG:-\$HOME/.docker}/cli-plugins"
if [ -d "\$plugins" ]; then ln -s "\$plugins" "\$dir/cli-plugins"; fi
printf '%s%s\\n' '${MARKER}' "\$dir"
"""
    }

    @NonCPS
    static String removeScript(String dir) {
        return "#!/bin/sh\nrm -rf -- ${Shell.quote(dir)}\n"
    }

    @NonCPS
    static String parse(String out) {
        for (String line : (out ?: '').readLines()) {
            if (line.startsWith(MARKER) && line.length() > MARKER.length()) {
                return line.substring(MARKER.length())
            }
        }
        return null
    }
}
