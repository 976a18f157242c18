import groovy.json.JsonOutput
import groovy.json.JsonSlurperClassic
import io.cicache.Json
import org.junit.Test

import static org.junit.Assert.*

/** io.cicache.Json, the library's own parser (sandbox-safe), against JsonSlurperClassic as the oracle. */
class JsonTest {
    /** Numbers compared by value: the oracle returns BigDecimal where Json returns Double. */
    static Object normalize(Object o) {
        if (o instanceof Map) {
            return o.collectEntries { k, v -> [k, normalize(v)] }
        }
        if (o instanceof List) {
            return o.collect { normalize(it) }
        }
        if (o instanceof BigDecimal || o instanceof Double) {
            return ((Number) o).doubleValue()
        }
        if (o instanceof Integer || o instanceof Long || o instanceof BigInteger) {
            return ((Number) o).longValue()
        }
        return o
    }

    static void same(String text) {
        Object want = new JsonSlurperClassic().parseText(text)
        Object got = Json.parse(text)
        assertEquals(text, normalize(want), normalize(got))
    }

    @Test
    void parsesWhatTheHelperPrints() {
        same('''{
  "ok": true,
  "key": "pip-linux-x86_64-0123abcd",
  "steps": {"cached": 7, "total": 9, "list": [{"name": "RUN pip install -r requirements.txt", "seconds": 12.5, "cached": false}]},
  "bytes": 123456789012,
  "ratio": -1.5e-3,
  "error": null,
  "empty": {}, "none": [],
  "verdict": "cache: 7/9 steps cached, 41/42 wheels from cache"
}''')
    }

    @Test
    void stringsKeepEveryEscapeAndCharacter() {
        same('{"s": "quote \\" backslash \\\\ slash \\/ \\b\\f\\n\\r\\t unicode \\u00e9\\u4e2d raw é 中 $HOME `x`"}')
        assertEquals('a"b\\c\n\u00e9', Json.parse('"a\\"b\\\\c\\n\\u00e9"'))
    }

    @Test
    void randomDocumentsMatchTheOracle() {
        Random rnd = new Random(7)
        String alphabet = "ab \"\\/\n\t{}[]:,é中\u0001"
        Closure gen
        gen = { int depth ->
            switch (depth > 3 ? rnd.nextInt(4) : rnd.nextInt(6)) {
                case 0: return (0..<rnd.nextInt(10)).collect { alphabet[rnd.nextInt(alphabet.length())] }.join()
                case 1: return rnd.nextInt(3) == 0 ? rnd.nextLong() : rnd.nextInt(1000) - 500
                case 2: return rnd.nextBoolean()
                case 3: return rnd.nextInt(2) ? null : rnd.nextDouble() * 1000
                case 4: return (0..<rnd.nextInt(4)).collect { gen(depth + 1) }
                default: return (0..<rnd.nextInt(4)).collectEntries { ["k${it}${alphabet[rnd.nextInt(alphabet.length())]}", gen(depth + 1)] }
            }
        }
        200.times {
            String text = JsonOutput.toJson([doc: gen(0)])
            same(rnd.nextBoolean() ? JsonOutput.prettyPrint(text) : text)
        }
    }

    @Test
    void resultIsPlainSerializableCollections() {
        Map m = (Map) Json.parse('{"a": [1, {"b": 2}]}')
        assertEquals(LinkedHashMap, m.getClass())
        assertEquals(ArrayList, m.a.getClass())
        Harness.assertSerializable(m)
    }

    @Test
    void invalidJsonIsAnErrorThatSaysWhere() {
        ['{', '{"a" 1}', '{"a": 1,}', '[1 2]', '{"a": tru}', '"open', '{"a": 1} x', '{"a": 01}', '"\\x"', '"\\u12"'].each { String bad ->
            try {
                Json.parse(bad)
                fail("parsed invalid JSON: ${bad}")
            } catch (IllegalArgumentException e) {
                assertTrue(e.message, e.message.startsWith('invalid JSON at offset '))
            }
        }
        assertNull(Json.parse('  '))
    }
}
