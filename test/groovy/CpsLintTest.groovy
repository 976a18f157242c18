import org.codehaus.groovy.ast.ClassNode
import org.codehaus.groovy.ast.CodeVisitorSupport
import org.codehaus.groovy.ast.MethodNode
import org.codehaus.groovy.ast.Parameter
import org.codehaus.groovy.ast.Variable
import org.codehaus.groovy.ast.expr.BinaryExpression
import org.codehaus.groovy.ast.expr.ClassExpression
import org.codehaus.groovy.ast.expr.ConstructorCallExpression
import org.codehaus.groovy.ast.expr.Expression
import org.codehaus.groovy.ast.expr.MethodCallExpression
import org.codehaus.groovy.ast.expr.StaticMethodCallExpression
import org.codehaus.groovy.ast.expr.VariableExpression
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.Phases
import org.codehaus.groovy.control.customizers.ImportCustomizer
import org.junit.Test

import static org.junit.Assert.*

/**
 * The CPS rules Jenkins enforces only at run time, checked on the source of src/ and vars/.
 *
 * Under Jenkins every library method is CPS-transformed unless it is @NonCPS (constructors
 * never are). @NonCPS code that calls a CPS-transformed method does not get its return value
 * (the runtime warns "expected to call X but wound up catching Y"), so each @NonCPS method's
 * callees are resolved against the library's own methods and each must be @NonCPS too:
 *   - a call on `this`, a class (`Shell.quote`) or a variable declared with a library type
 *     resolves to that class's methods of that name;
 *   - a call on anything else (a dynamically typed variable, `it`, a property) can reach any
 *     library method of that name, as `word.toString()` on an EnvRef did: all are candidates;
 *   - a call on a variable declared with a JDK/Groovy type (String, Map, Matcher) reaches no
 *     library method.
 * Methods that override Object's (toString, equals, hashCode) are called implicitly by Groovy
 * and the JDK (GStrings, collections) and must be @NonCPS whoever calls them. No pipeline step
 * is called from @NonCPS code, and CPS code keeps no regex Matcher (`=~`, not serializable).
 */
class CpsLintTest {
    static final List<String> STEPS = ['sh', 'echo', 'error', 'writeFile', 'readFile', 'fileExists', 'withEnv',
                                       'withCredentials', 'cache', 'archiveArtifacts', 'pwd', 'libraryResource', 'sleep',
                                       'readJSON', 'isUnix', 'deleteDir', 'dir', 'unstable', 'aws', 'usernamePassword']
    static final List<String> OBJECT_METHODS = ['toString', 'equals', 'hashCode', 'compareTo', 'clone', 'finalize']
    // Script plumbing that is never a library callee.
    static final List<String> SCRIPT_METHODS = ['run', 'main']

    static Map<String, String> librarySources() {
        Map<String, String> files = [:]
        new File(Harness.ROOT, 'src').eachFileRecurse { if (it.name.endsWith('.groovy')) files[it.path - Harness.ROOT.path - '/'] = it.text }
        new File(Harness.ROOT, 'vars').listFiles().findAll { it.name.endsWith('.groovy') }.sort().each {
            files["vars/${it.name}".toString()] = it.text
        }
        return files
    }

    /** [file:, owner: ClassNode, method: MethodNode, nonCps:] for every method of the given sources, compiled to semantic analysis. */
    static List<Map> methods(Map<String, String> sources) {
        CompilerConfiguration cc = new CompilerConfiguration()
        // Jenkins imports NonCPS into vars/ scripts for them.
        cc.addCompilationCustomizers(new ImportCustomizer().addImports('com.cloudbees.groovy.cps.NonCPS'))
        CompilationUnit cu = new CompilationUnit(cc, null, new GroovyClassLoader(CpsLintTest.classLoader))
        Map<Object, String> fileOf = [:]
        sources.each { String name, String text ->
            String unitName = name.startsWith('vars/') ? name.substring(5) : name
            fileOf[cu.addSource(unitName, text)] = name
        }
        cu.compile(Phases.SEMANTIC_ANALYSIS)
        List<Map> out = []
        cu.AST.modules.each { m ->
            String file = fileOf[m.context]
            m.classes.each { ClassNode cn ->
                cn.methods.findAll { MethodNode mn -> !mn.synthetic && !(cn.script && mn.name in SCRIPT_METHODS) }.each { MethodNode mn ->
                    boolean nonCps = mn.annotations.any { it.classNode.nameWithoutPackage == 'NonCPS' }
                    out.add([file: file, owner: cn, method: mn, nonCps: nonCps])
                }
            }
        }
        return out
    }

    /** The declared type of a receiver when it is known: a library ClassNode, 'foreign' (a JDK/Groovy type), or null (dynamic). */
    static Object receiverType(Expression recv, ClassNode self, Set<String> libraryClasses) {
        if (recv instanceof VariableExpression) {
            VariableExpression v = (VariableExpression) recv
            if (v.thisExpression) {
                return self
            }
            Variable acc = v.accessedVariable
            ClassNode t = acc instanceof Parameter ? ((Parameter) acc).originType :
                (acc instanceof VariableExpression ? ((VariableExpression) acc).originType : null)
            if (t == null || acc?.dynamicTyped || t.name == 'java.lang.Object') {
                return null
            }
            return libraryClasses.contains(t.name) ? t : 'foreign'
        }
        if (recv instanceof ClassExpression) {
            return libraryClasses.contains(recv.type.name) ? recv.type : 'foreign'
        }
        if (recv instanceof ConstructorCallExpression) {
            return libraryClasses.contains(recv.type.name) ? recv.type : 'foreign'
        }
        return null
    }

    /** Every CPS rule the library breaks, one line each. */
    static List<String> problems(Map<String, String> sources) {
        List<Map> all = methods(sources)
        Set<String> libraryClasses = all.collect { ((ClassNode) it.owner).name } as Set
        List<String> problems = []
        all.findAll { !it.nonCps && it.method.name in OBJECT_METHODS }.each { Map m ->
            problems.add("${m.file}: ${m.owner.nameWithoutPackage}.${m.method.name} overrides Object's and is not @NonCPS " +
                '(Groovy and the JDK call it from non-CPS code)')
        }
        all.findAll { it.nonCps }.each { Map m ->
            ClassNode self = (ClassNode) m.owner
            Closure check = { String name, Object type, int argc ->
                List<Map> targets = all.findAll { Map t ->
                    t.method.name == name && (type == null || (type instanceof ClassNode && t.owner.name == ((ClassNode) type).name)) &&
                        (t.method.parameters.size() == argc || t.method.parameters.any { it.hasInitialExpression() } ||
                            (t.method.parameters.size() > 0 && t.method.parameters[-1].type.array))
                }
                targets.findAll { !it.nonCps }.each { Map t ->
                    problems.add("${m.file}: @NonCPS ${self.nameWithoutPackage}.${m.method.name} calls " +
                        "${t.owner.nameWithoutPackage}.${name}, which is CPS-transformed (mark it @NonCPS)")
                }
            }
            ((MethodNode) m.method).code?.visit(new CodeVisitorSupport() {
                void visitMethodCallExpression(MethodCallExpression call) {
                    String name = call.methodAsString
                    int argc = call.arguments.respondsTo('getExpressions') ? call.arguments.expressions.size() : 1
                    Expression recv = call.objectExpression
                    boolean onSteps = recv instanceof VariableExpression && ((VariableExpression) recv).name in ['steps', 'script']
                    if (name != null && (call.implicitThis || onSteps || (recv instanceof VariableExpression && recv.thisExpression)) && name in STEPS) {
                        problems.add("${m.file}: @NonCPS ${self.nameWithoutPackage}.${m.method.name} calls the step ${name}")
                    } else if (name != null && !onSteps) {
                        Object type = call.implicitThis ? self : receiverType(recv, self, libraryClasses)
                        if (type != 'foreign') {
                            check(name, type, argc)
                        }
                    }
                    super.visitMethodCallExpression(call)
                }

                void visitStaticMethodCallExpression(StaticMethodCallExpression call) {
                    int argc = call.arguments.respondsTo('getExpressions') ? call.arguments.expressions.size() : 1
                    check(call.method, call.ownerType, argc)
                    super.visitStaticMethodCallExpression(call)
                }
            })
        }
        return problems.collect { it.toString() }.unique()
    }

    @Test
    void nonCpsMethodsCallOnlyNonCpsMethods() {
        Map<String, String> sources = librarySources()
        assertEquals([], problems(sources))
        assertTrue('the lint found no @NonCPS methods: it is not looking', methods(sources).count { it.nonCps } >= 15)
    }

    /** The bug it exists for (issue 23, item 1): @NonCPS Shell.quote called the CPS EnvRef.toString. */
    @Test
    void catchesACpsToStringCalledFromNonCpsCode() {
        Map<String, String> sources = librarySources()
        sources['src/io/cicache/EnvRef.groovy'] = '''package io.cicache
class EnvRef implements Serializable {
    final String name
    EnvRef(String name) { this.name = name }
    String toString() { return '"$' + name + '"' }
}
'''
        sources['src/io/cicache/Shell.groovy'] = sources['src/io/cicache/Shell.groovy'].replace(
            'return ((EnvRef) word).shellWord()', 'return word.toString()')
        assertTrue(sources['src/io/cicache/Shell.groovy'].contains('return word.toString()'))
        List<String> p = problems(sources)
        assertTrue(p.toString(), p.contains('src/io/cicache/Shell.groovy: @NonCPS Shell.quote calls EnvRef.toString, which is CPS-transformed (mark it @NonCPS)'))
        assertTrue(p.toString(), p.any { it.contains('EnvRef.toString overrides Object') })
    }

    @Test
    void catchesCpsCalleesThroughThisClassesAndTypedVariables() {
        Map<String, String> sources = [
            'src/x/A.groovy': '''package x
import com.cloudbees.groovy.cps.NonCPS
class A implements Serializable {
    String cps() { return 'a' }
    static String cpsStatic() { return 'b' }
    @NonCPS String ok() { return 'c' }
    @NonCPS String viaThis() { return cps() + ok() }
    @NonCPS static String viaClass() { return A.cpsStatic() }
    @NonCPS static String viaTyped(A a) { return a.cps() }
    @NonCPS static String notOurs(String s) { return s.toUpperCase() }
    @NonCPS static String viaStep() { return sh('x') }
}
''',
        ]
        List<String> p = problems(sources)
        assertEquals([
            'src/x/A.groovy: @NonCPS A.viaThis calls A.cps, which is CPS-transformed (mark it @NonCPS)',
            'src/x/A.groovy: @NonCPS A.viaClass calls A.cpsStatic, which is CPS-transformed (mark it @NonCPS)',
            'src/x/A.groovy: @NonCPS A.viaTyped calls A.cps, which is CPS-transformed (mark it @NonCPS)',
            'src/x/A.groovy: @NonCPS A.viaStep calls the step sh',
        ].sort(), p.sort())
    }

    @Test
    void cpsCodeKeepsNoRegexMatcher() {
        List<Object> problems = []
        methods(librarySources()).findAll { !it.nonCps }.each { Map m ->
            ((MethodNode) m.method).code?.visit(new CodeVisitorSupport() {
                void visitBinaryExpression(BinaryExpression b) {
                    if (b.operation.text == '=~') {
                        problems.add("${m.file}: ${m.method.name} uses =~ outside @NonCPS (a Matcher is not serializable)")
                    }
                    super.visitBinaryExpression(b)
                }
            })
        }
        assertEquals([], problems)
    }
}
