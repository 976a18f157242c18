package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/** POSIX shell quoting for the command lines the steps pass to `sh`. */
class Shell implements Serializable {
    private static final long serialVersionUID = 1L

    /** An EnvRef as "$NAME"; else 'word' with every ' written as '\'' ; plain words stay bare for readable logs. */
    @NonCPS
    static String quote(Object word) {
        if (word instanceof EnvRef) {
            return ((EnvRef) word).shellWord()
        }
        String s = word == null ? '' : word.toString()
        if (s ==~ /^[A-Za-z0-9_@%+=:,.\/-]+$/) {
            return s
        }
        return "'" + s.replace("'", "'\\''") + "'"
    }

    @NonCPS
    static String join(List words) {
        return words.collect { quote(it) }.join(' ')
    }
}
