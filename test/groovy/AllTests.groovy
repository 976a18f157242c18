// Runs every *Test.groovy class in this directory with JUnit 4; prints one line per test and
// a last line "N passed, N failed"; exits non-zero on any failure.
import org.junit.runner.Description
import org.junit.runner.JUnitCore
import org.junit.runner.Result
import org.junit.runner.notification.Failure
import org.junit.runner.notification.RunListener

File dir = new File(Harness.ROOT, 'test/groovy')
List<String> only = args ? args.toList() : []
List<String> names = dir.listFiles().findAll { it.name.endsWith('Test.groovy') }.sort { it.name }
    .collect { it.name - '.groovy' }
    .findAll { !only || only.contains(it) }
List<Class> classes = []
int loadFailures = 0
for (String n : names) {
    try {
        classes.add(Class.forName(n, true, this.class.classLoader))
    } catch (Throwable e) {
        loadFailures++
        println "FAIL ${n}: does not compile or load"
        println '    ' + e.toString().readLines().take(20).join('\n    ')
    }
}
if (only && names.size() != only.size()) {
    println "FAIL no such test class: ${only - names}"
    loadFailures++
}

JUnitCore core = new JUnitCore()
Set<String> failedNames = []
core.addListener(new RunListener() {
    void testFailure(Failure f) {
        failedNames.add(f.description.displayName)
        println "FAIL ${f.description.displayName}"
        println '    ' + (f.exception.toString()).readLines().take(12).join('\n    ')
        f.exception.stackTrace.findAll { it.fileName?.endsWith('.groovy') }.take(6).each { println "      at ${it}" }
    }

    void testFinished(Description d) {
        if (!failedNames.contains(d.displayName)) {
            println "ok   ${d.displayName}"
        }
    }
})
Result r = core.run(classes as Class[])
int failed = r.failureCount + loadFailures
int passed = r.runCount - failedNames.findAll { !it.startsWith('initializationError') }.size()
if (passed < 0) {
    passed = 0
}
println "${passed} passed, ${failed} failed"
System.exit(failed == 0 && r.runCount > 0 ? 0 : 1)
