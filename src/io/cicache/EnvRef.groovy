package io.cicache

/**
 * A command-line word that is the value of an environment variable, written as "$NAME" in
 * the script so the value (a user name from a credential) is expanded by the shell on the
 * agent and never appears in the script text or the log.
 */
class EnvRef implements Serializable {
    private static final long serialVersionUID = 1L

    final String name

    EnvRef(String name) {
        this.name = name
    }

    String toString() {
        return '"$' + name + '"'
    }
}
