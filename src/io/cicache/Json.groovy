package io.cicache

import com.cloudbees.groovy.cps.NonCPS
import groovy.json.JsonSlurperClassic

/**
 * JSON from the helper into plain, serializable Maps and Lists. JsonSlurperClassic (not
 * JsonSlurper, whose lazy maps cannot be serialized into the CPS program state), @NonCPS.
 */
class Json implements Serializable {
    private static final long serialVersionUID = 1L

    /** The parsed document, or null when the text is empty. Throws on invalid JSON. */
    @NonCPS
    static Object parse(String text) {
        if (text == null || text.trim().isEmpty()) {
            return null
        }
        return new JsonSlurperClassic().parseText(text)
    }
}
