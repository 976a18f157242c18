import org.codehaus.groovy.ast.ClassNode
import org.codehaus.groovy.ast.CodeVisitorSupport
import org.codehaus.groovy.ast.MethodNode
import org.codehaus.groovy.ast.expr.BinaryExpression
import org.codehaus.groovy.ast.expr.MethodCallExpression
import org.codehaus.groovy.ast.expr.StaticMethodCallExpression
import org.codehaus.groovy.ast.expr.VariableExpression
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.Phases
import org.junit.Test

import static org.junit.Assert.*

/**
 * The CPS rules Jenkins enforces only at run time, checked on the source of src/ and vars/:
 * a @NonCPS method calls no pipeline step and no CPS method (Jenkins would run the step
 * once and drop the rest, or fail); CPS code keeps no regex Matcher (`=~`), which is not
 * serializable and breaks the build when Jenkins saves the program between steps.
 */
class CpsLintTest {
    static final List<String> STEPS = ['sh', 'echo', 'error', 'writeFile', 'readFile', 'fileExists', 'withEnv',
                                       'withCredentials', 'cache', 'archiveArtifacts', 'pwd', 'libraryResource', 'sleep']

    static List<File> sources() {
        List<File> files = []
        new File(Harness.ROOT, 'src').eachFileRecurse { if (it.name.endsWith('.groovy')) files.add(it) }
        files.addAll(new File(Harness.ROOT, 'vars').listFiles().findAll { it.name.endsWith('.groovy') })
        return files.sort()
    }

    static List<Map> methods() {
        List<Map> out = []
        sources().each { File f ->
            CompilationUnit cu = new CompilationUnit()
            cu.addSource(f)
            cu.compile(Phases.CONVERSION)
            cu.AST.modules.each { m ->
                m.classes.each { ClassNode cn ->
                    cn.methods.findAll { !it.synthetic && it.name != 'run' || f.path.contains('/src/') }.each { MethodNode mn ->
                        boolean nonCps = mn.annotations.any { it.classNode.nameWithoutPackage == 'NonCPS' }
                        out.add([file: f.name, method: mn.name, nonCps: nonCps, node: mn])
                    }
                }
            }
        }
        return out
    }

    @Test
    void nonCpsMethodsCallNoStepAndNoCpsMethod() {
        List<Map> all = methods()
        Set<String> cpsNames = all.findAll { !it.nonCps && it.method != 'run' }*.method as Set
        // Names that are also ordinary Groovy/JDK methods the @NonCPS code uses.
        cpsNames.removeAll(['call', 'find'])
        List<String> problems = []
        all.findAll { it.nonCps }.each { Map m ->
            ((MethodNode) m.node).code?.visit(new CodeVisitorSupport() {
                void visitMethodCallExpression(MethodCallExpression call) {
                    String name = call.methodAsString
                    boolean onSteps = call.objectExpression instanceof VariableExpression &&
                        ((VariableExpression) call.objectExpression).name in ['steps', 'this', 'script']
                    boolean implicit = call.implicitThis
                    if ((implicit || onSteps) && name in STEPS) {
                        problems.add("${m.file}: @NonCPS ${m.method} calls the step ${name}")
                    } else if ((implicit || onSteps) && name in cpsNames) {
                        problems.add("${m.file}: @NonCPS ${m.method} calls the CPS method ${name}")
                    }
                    super.visitMethodCallExpression(call)
                }

                void visitStaticMethodCallExpression(StaticMethodCallExpression call) {
                    if (call.method in cpsNames) {
                        problems.add("${m.file}: @NonCPS ${m.method} calls the CPS method ${call.method}")
                    }
                    super.visitStaticMethodCallExpression(call)
                }
            })
        }
        assertEquals([], problems)
        assertTrue('the lint found no @NonCPS methods: it is not looking', all.count { it.nonCps } >= 15)
    }

    @Test
    void cpsCodeKeepsNoRegexMatcher() {
        List<String> problems = []
        methods().findAll { !it.nonCps }.each { Map m ->
            ((MethodNode) m.node).code?.visit(new CodeVisitorSupport() {
                void visitBinaryExpression(BinaryExpression b) {
                    if (b.operation.text == '=~') {
                        problems.add("${m.file}: ${m.method} uses =~ outside @NonCPS (a Matcher is not serializable)")
                    }
                    super.visitBinaryExpression(b)
                }
            })
        }
        assertEquals([], problems)
    }
}
