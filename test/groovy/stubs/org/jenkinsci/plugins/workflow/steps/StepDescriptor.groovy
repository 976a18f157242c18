package org.jenkinsci.plugins.workflow.steps

/**
 * Stand-in for workflow-step-api's StepDescriptor: byFunctionName() and the `clazz` field of
 * hudson.model.Descriptor. Tests register steps (or make the lookup refused, as the script
 * security sandbox does) through the static fields.
 */
class StepDescriptor {
    static Map<String, StepDescriptor> installed = [:]
    static boolean refused = false
    static int lookups = 0

    final Class clazz

    StepDescriptor(Class clazz) {
        this.clazz = clazz
    }

    static StepDescriptor byFunctionName(String name) {
        lookups++
        if (refused) {
            throw new SecurityException('Scripts not permitted to use staticMethod org.jenkinsci.plugins.workflow.steps.StepDescriptor byFunctionName java.lang.String')
        }
        return installed.get(name)
    }

    static void reset() {
        installed = [:]
        refused = false
        lookups = 0
    }
}
