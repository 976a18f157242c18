package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/**
 * JSON from the helper into plain, serializable LinkedHashMaps and ArrayLists (String, Boolean,
 * null, Integer/Long and Double values).
 *
 * A small parser of its own rather than JsonSlurperClassic or readJSON: JsonSlurperClassic is
 * not on the script-security whitelist (a sandboxed library fails on every step) and readJSON
 * needs the Pipeline Utility Steps plugin. It uses only whitelisted calls (String substring,
 * indexOf, startsWith, isInteger/toInteger/isLong/toLong/toDouble; StringBuilder append;
 * Integer.parseInt) and is @NonCPS, so a document of any size is parsed in one go. JsonTest
 * checks it against JsonSlurperClassic.
 */
class Json implements Serializable {
    private static final long serialVersionUID = 1L

    private static final String WS = ' \t\r\n'
    private static final String NUMBER_CHARS = '0123456789+-.eE'

    /** The parsed document, or null when the text is empty. Throws IllegalArgumentException on invalid JSON. */
    @NonCPS
    static Object parse(String text) {
        if (text == null || text.trim().isEmpty()) {
            return null
        }
        int[] at = new int[1]
        Object v = value(text, at)
        skipWs(text, at)
        if (at[0] != text.length()) {
            throw bad(text, at[0], 'text after the document')
        }
        return v
    }

    @NonCPS
    private static Object value(String s, int[] at) {
        skipWs(s, at)
        if (at[0] >= s.length()) {
            throw bad(s, at[0], 'the document ends early')
        }
        String c = s.substring(at[0], at[0] + 1)
        if (c == '{') {
            return object(s, at)
        }
        if (c == '[') {
            return array(s, at)
        }
        if (c == '"') {
            return string(s, at)
        }
        if (s.startsWith('true', at[0])) {
            at[0] += 4
            return Boolean.TRUE
        }
        if (s.startsWith('false', at[0])) {
            at[0] += 5
            return Boolean.FALSE
        }
        if (s.startsWith('null', at[0])) {
            at[0] += 4
            return null
        }
        return number(s, at)
    }

    @NonCPS
    private static Map object(String s, int[] at) {
        Map m = new LinkedHashMap()
        at[0]++
        skipWs(s, at)
        if (peek(s, at) == '}') {
            at[0]++
            return m
        }
        while (true) {
            skipWs(s, at)
            if (peek(s, at) != '"') {
                throw bad(s, at[0], 'expected a "quoted" key')
            }
            String k = string(s, at)
            skipWs(s, at)
            expect(s, at, ':')
            m.put(k, value(s, at))
            skipWs(s, at)
            String c = peek(s, at)
            at[0]++
            if (c == '}') {
                return m
            }
            if (c != ',') {
                throw bad(s, at[0] - 1, "expected ',' or '}'")
            }
        }
    }

    @NonCPS
    private static List array(String s, int[] at) {
        List l = new ArrayList()
        at[0]++
        skipWs(s, at)
        if (peek(s, at) == ']') {
            at[0]++
            return l
        }
        while (true) {
            l.add(value(s, at))
            skipWs(s, at)
            String c = peek(s, at)
            at[0]++
            if (c == ']') {
                return l
            }
            if (c != ',') {
                throw bad(s, at[0] - 1, "expected ',' or ']'")
            }
        }
    }

    @NonCPS
    private static String string(String s, int[] at) {
        StringBuilder b = new StringBuilder()
        int i = at[0] + 1
        while (true) {
            int q = s.indexOf('"', i)
            int e = s.indexOf('\\', i)
            if (q < 0) {
                throw bad(s, at[0], 'a string is not closed')
            }
            if (e < 0 || q < e) {
                b.append(s.substring(i, q))
                at[0] = q + 1
                return b.toString()
            }
            b.append(s.substring(i, e))
            if (e + 1 >= s.length()) {
                throw bad(s, e, 'a string is not closed')
            }
            String c = s.substring(e + 1, e + 2)
            i = e + 2
            if (c == 'u') {
                if (e + 6 > s.length()) {
                    throw bad(s, e, 'a \\u escape needs four hex digits')
                }
                String hex = s.substring(e + 2, e + 6)
                if (!(hex ==~ /[0-9a-fA-F]{4}/)) {
                    throw bad(s, e, 'a \\u escape needs four hex digits')
                }
                b.append((char) Integer.parseInt(hex, 16))
                i = e + 6
            } else {
                int k = '"\\/bfnrt'.indexOf(c)
                if (k < 0) {
                    throw bad(s, e, "unknown escape \\${c}")
                }
                b.append(['"', '\\', '/', '\b', '\f', '\n', '\r', '\t'][k])
            }
        }
    }

    @NonCPS
    private static Object number(String s, int[] at) {
        int start = at[0]
        int i = start
        while (i < s.length() && NUMBER_CHARS.indexOf(s.substring(i, i + 1)) >= 0) {
            i++
        }
        String t = s.substring(start, i)
        if (!(t ==~ /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/)) {
            throw bad(s, start, t ? "not a number: ${t}" : 'unexpected character')
        }
        at[0] = i
        if (t ==~ /-?[0-9]+/) {
            if (t.isInteger()) {
                return t.toInteger()
            }
            return t.isLong() ? t.toLong() : t.toDouble()
        }
        return t.toDouble()
    }

    @NonCPS
    private static void skipWs(String s, int[] at) {
        while (at[0] < s.length() && WS.indexOf(s.substring(at[0], at[0] + 1)) >= 0) {
            at[0]++
        }
    }

    @NonCPS
    private static String peek(String s, int[] at) {
        return at[0] < s.length() ? s.substring(at[0], at[0] + 1) : ''
    }

    @NonCPS
    private static void expect(String s, int[] at, String c) {
        if (peek(s, at) != c) {
            throw bad(s, at[0], "expected '${c}'")
        }
        at[0]++
    }

    @NonCPS
    private static IllegalArgumentException bad(String s, int pos, String what) {
        int from = Math.max(0, pos - 20)
        int to = Math.min(s.length(), pos + 20)
        return new IllegalArgumentException("invalid JSON at offset ${pos}: ${what} (near '${s.substring(from, to)}')".toString())
    }
}
