package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/**
 * A command-line word that is the value of an environment variable, written as "$NAME" in
 * the script so the value (a user name from a credential) is expanded by the shell on the
 * agent and never appears in the script text or the log.
 *
 * toString() is @NonCPS: Shell.quote (itself @NonCPS) calls it, and a CPS-transformed method
 * called from @NonCPS code does not return its value under Jenkins (the whole `sh` script
 * became the bare word). Every method of a library class called from @NonCPS code must be
 * @NonCPS too: test/groovy/CpsLintTest and CodeNarc (test/lib/codenarc.sh) check it.
 */
class EnvRef implements Serializable {
    private static final long serialVersionUID = 1L

    final String name

    EnvRef(String name) {
        this.name = name
    }

    @NonCPS
    String shellWord() {
        return '"$' + name + '"'
    }

    @NonCPS
    @Override
    String toString() {
        return shellWord()
    }
}
