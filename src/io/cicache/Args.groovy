package io.cicache

import com.cloudbees.groovy.cps.NonCPS

/**
 * Checks a step's named arguments against its spec and fills in the defaults.
 *
 * A spec maps each accepted argument to [type:, required:, values:, default:, help:]; types are
 * string, list (of strings), map (of strings), boolean, integer, duration (14d, 72h, 1h30m)
 * and size (20GB, 500MiB). Pure computation (no steps), so it runs as @NonCPS; the caller
 * turns a returned error into error().
 */
class Args implements Serializable {
    private static final long serialVersionUID = 1L

    static final String DURATION = /^(\d+\s*(ms|s|sec|m|min|h|hr|d|day|days|w|week|weeks)\s*)+$/
    static final String SIZE = /^\d+(\.\d+)?\s*(B|K|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)?$/

    /** Returns [args: normalized Map, error: null] or [args: null, error: message]. */
    @NonCPS
    static Map check(String step, Object given, Map spec) {
        if (given == null) {
            given = [:]
        }
        if (!(given instanceof Map)) {
            return fail("${step}: expected named arguments, e.g. ${step}(${example(spec)}); got ${describe(given)}")
        }
        Map out = [:]
        List<String> accepted = new ArrayList<String>(spec.keySet().collect { it.toString() })
        Collections.sort(accepted)
        for (Object k : ((Map) given).keySet()) {
            String name = k.toString()
            if (!spec.containsKey(name)) {
                String hint = closest(name, accepted)
                return fail("${step}: unknown argument '${name}'${hint ? " (did you mean '${hint}'?)" : ''}. Accepted arguments: ${accepted.join(', ')}")
            }
        }
        for (Map.Entry e : spec.entrySet()) {
            String name = e.key.toString()
            Map s = (Map) e.value
            boolean present = ((Map) given).containsKey(name) && ((Map) given).get(name) != null
            if (!present) {
                if (s.required) {
                    return fail("${step}: argument '${name}' is required${s.help ? ': ' + s.help : ''}")
                }
                Object d = s.get('default')
                out.put(name, d instanceof List ? new ArrayList(d) : (d instanceof Map ? new LinkedHashMap(d) : d))
                continue
            }
            Object v = ((Map) given).get(name)
            Map r = convert(step, name, s, v)
            if (r.error) {
                return r
            }
            out.put(name, r.value)
        }
        return [args: out, error: null]
    }

    @NonCPS
    private static Map convert(String step, String name, Map s, Object v) {
        String type = s.type ?: 'string'
        String where = "${step}: argument '${name}'"
        switch (type) {
            case 'string':
                if (!(v instanceof CharSequence)) {
                    return fail("${where} must be a string${s.values ? ', one of ' + quoted(s.values) : ''} (got ${describe(v)})")
                }
                String str = v.toString()
                if (s.values && !((List) s.values).contains(str)) {
                    return fail("${where} must be one of ${quoted(s.values)} (got '${str}')")
                }
                if (s.nonEmpty && str.trim().isEmpty()) {
                    return fail("${where} must not be empty${s.help ? ': ' + s.help : ''}")
                }
                return [value: str]
            case 'list':
                if (!(v instanceof List)) {
                    return fail("${where} must be a list of strings, e.g. ${name}: ['a', 'b'] (got ${describe(v)})")
                }
                List<String> l = []
                for (Object x : (List) v) {
                    if (!(x instanceof CharSequence)) {
                        return fail("${where} must be a list of strings; it holds ${describe(x)}")
                    }
                    l.add(x.toString())
                }
                return [value: l]
            case 'map':
                if (!(v instanceof Map)) {
                    return fail("${where} must be a map of strings, e.g. ${name}: [KEY: 'value'] (got ${describe(v)})")
                }
                Map<String, String> m = [:]
                for (Map.Entry x : ((Map) v).entrySet()) {
                    if (x.value == null || x.value instanceof Map || x.value instanceof Collection) {
                        return fail("${where}: the value of '${x.key}' must be a string or number (got ${describe(x.value)})")
                    }
                    m.put(x.key.toString(), x.value.toString())
                }
                return [value: m]
            case 'boolean':
                if (!(v instanceof Boolean)) {
                    return fail("${where} must be true or false (got ${describe(v)})")
                }
                return [value: v]
            case 'integer':
                if (!(v instanceof Integer || v instanceof Long) || ((Number) v).longValue() < 0) {
                    return fail("${where} must be a whole number >= 0 (got ${describe(v)})")
                }
                return [value: ((Number) v).longValue()]
            case 'duration':
                if (!(v instanceof CharSequence) || !(v.toString().trim() ==~ DURATION)) {
                    return fail("${where} must be a duration such as '14d', '72h' or '1h30m' (got ${describe(v)})")
                }
                return [value: v.toString().trim()]
            case 'size':
                if (!(v instanceof CharSequence) || !(v.toString().trim() ==~ SIZE)) {
                    return fail("${where} must be a size such as '20GB' or '500MiB' (got ${describe(v)})")
                }
                return [value: v.toString().trim()]
            default:
                return fail("${step}: internal error: unknown type '${type}' for '${name}'")
        }
    }

    /** A size argument ('2GB', '500MiB', '1024') in whole megabytes (MiB), rounded up; bare numbers are bytes. */
    @NonCPS
    static long megabytes(String size) {
        def m = size.trim() =~ /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/
        if (!m.matches()) {
            throw new IllegalArgumentException("not a size: ${size}".toString())
        }
        double n = m.group(1).toDouble()
        String unit = m.group(2).toUpperCase()
        Map<String, Double> factor = ['': 1d, B: 1d, K: 1e3d, KB: 1e3d, KIB: 1024d, M: 1e6d, MB: 1e6d, MIB: 1048576d,
                                      G: 1e9d, GB: 1e9d, GIB: 1073741824d, T: 1e12d, TB: 1e12d, TIB: 1099511627776d]
        double bytes = n * factor[unit]
        return (long) Math.ceil(bytes / 1048576d)
    }

    @NonCPS
    private static Map fail(Object msg) {
        return [args: null, error: msg.toString(), value: null]
    }

    @NonCPS
    static String describe(Object v) {
        if (v == null) {
            return 'null'
        }
        if (v instanceof CharSequence) {
            return "the string '${v}'"
        }
        if (v instanceof List) {
            return 'a list'
        }
        if (v instanceof Map) {
            return 'a map'
        }
        if (v instanceof Boolean) {
            return "the boolean ${v}"
        }
        if (v instanceof Number) {
            return "the number ${v}"
        }
        return "the value ${v}"
    }

    @NonCPS
    static String quoted(Object values) {
        return ((List) values).collect { "'${it}'" }.join(', ')
    }

    @NonCPS
    private static String example(Map spec) {
        List parts = []
        for (Map.Entry e : spec.entrySet()) {
            if (((Map) e.value).required) {
                parts.add("${e.key}: ...")
            }
        }
        return parts.join(', ')
    }

    /** The accepted name closest to a misspelling (edit distance <= 2, or a prefix), or null. */
    @NonCPS
    static String closest(String name, List<String> accepted) {
        for (String a : accepted) {
            if (name.length() >= 3 && a.toLowerCase().startsWith(name.toLowerCase())) {
                return a
            }
        }
        String best = null
        int bestD = 3
        for (String a : accepted) {
            int d = distance(name.toLowerCase(), a.toLowerCase())
            if (d < bestD) {
                best = a
                bestD = d
            }
        }
        return best
    }

    @NonCPS
    private static int distance(String a, String b) {
        int[] prev = new int[b.length() + 1]
        int[] cur = new int[b.length() + 1]
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i
            for (int j = 1; j <= b.length(); j++) {
                int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + cost)
            }
            int[] t = prev
            prev = cur
            cur = t
        }
        return prev[b.length()]
    }
}
