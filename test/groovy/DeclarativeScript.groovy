/**
 * Base class for running a Jenkinsfile in the Harness: steps and library vars resolve from
 * the binding; any other name (pipeline, agent, stages, triggers, cron, options...) is a
 * declarative keyword, recorded as dsl:<name>, and its closure argument, if any, is run.
 */
abstract class DeclarativeScript extends Script {
    def methodMissing(String name, Object args) {
        Object[] a = (Object[]) args
        Object v = binding.hasVariable(name) ? binding.getVariable(name) : null
        if (v instanceof Closure) {
            return ((Closure) v).call(a)
        }
        if (v instanceof Script) {
            return ((Script) v).invokeMethod('call', a)
        }
        ((Harness) binding.getVariable('__harness')).calls.add([step: "dsl:${name}".toString(), args: a.findAll { !(it instanceof Closure) }])
        if (a.length > 0 && a[a.length - 1] instanceof Closure) {
            return ((Closure) a[a.length - 1]).call()
        }
        return [dsl: name, args: a.toList()]
    }
}
