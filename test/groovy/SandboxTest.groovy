import org.codehaus.groovy.ast.ClassNode
import org.codehaus.groovy.ast.CodeVisitorSupport
import org.codehaus.groovy.ast.MethodNode
import org.codehaus.groovy.ast.expr.ClassExpression
import org.codehaus.groovy.ast.expr.ConstructorCallExpression
import org.junit.Test

import static org.junit.Assert.*

/**
 * A sandboxed (folder) library runs under script-security, which rejects every class and
 * method not on its whitelist and queues an approval for it. No Jenkins runs here, so this
 * checks the part that broke before (issue 23 item 3): the classes the library's code names
 * (constructor calls, static calls, class literals) come from the JDK's java.lang/java.util
 * (whose everyday methods are whitelisted), Groovy's runtime and the library itself; the one
 * exception is the Jenkins API lookup of CachePlugin.detect, which runs only on request
 * (CachedDockerBuildTest.autoLooksNoPluginUpUnlessAsked...).
 */
class SandboxTest {
    static final List<String> ALLOWED_PREFIXES = ['java.lang.', 'java.util.', 'io.cicache.', 'groovy.lang.',
                                                  'com.cloudbees.groovy.cps.NonCPS']
    static final Map<String, String> ALLOWED_ONLY_IN = [
        'org.jenkinsci.plugins.workflow.steps.StepDescriptor': 'CachePlugin.detect',
    ]

    static List<String> violations(Map<String, String> sources) {
        List<String> out = []
        List<Map> all = CpsLintTest.methods(sources)
        // The library's own classes, the vars/ steps (cicache.install()) included.
        Set<String> library = all.collect { ((ClassNode) it.owner).name } as Set
        all.each { Map m ->
            String where = "${((ClassNode) m.owner).nameWithoutPackage}.${((MethodNode) m.method).name}"
            Closure check = { ClassNode t ->
                String n = t.name.replaceAll(/(\[\])+$/, '')
                if (t.isArray() || n in ['int', 'long', 'boolean', 'char', 'double']) {
                    return
                }
                if (library.contains(n) || ALLOWED_PREFIXES.any { n.startsWith(it) } || ALLOWED_ONLY_IN[n] == where) {
                    return
                }
                out.add("${m.file}: ${where} uses ${n}, which a sandboxed library may not (script approval)".toString())
            }
            ((MethodNode) m.method).code?.visit(new CodeVisitorSupport() {
                void visitConstructorCallExpression(ConstructorCallExpression call) {
                    check(call.type)
                    super.visitConstructorCallExpression(call)
                }

                void visitClassExpression(ClassExpression e) {
                    check(e.type)
                    super.visitClassExpression(e)
                }
            })
        }
        return out.unique()
    }

    @Test
    void theLibraryNamesOnlyClassesASandboxedLibraryMayUse() {
        assertEquals([], violations(CpsLintTest.librarySources()))
    }

    @Test
    void theOldJsonParserIsCaught() {
        Map<String, String> sources = CpsLintTest.librarySources()
        sources['src/io/cicache/Json.groovy'] = '''package io.cicache
import groovy.json.JsonSlurperClassic
class Json implements Serializable {
    @NonCPS
    static Object parse(String text) { return new JsonSlurperClassic().parseText(text) }
}
'''
        assertEquals(['src/io/cicache/Json.groovy: Json.parse uses groovy.json.JsonSlurperClassic, which a sandboxed library may not (script approval)'],
            violations(sources))
    }
}
