import java.lang.annotation.Retention
import java.lang.annotation.RetentionPolicy

/**
 * Stand-in for the `@Library('cicache') _` annotation Jenkins imports into every Jenkinsfile
 * (org.jenkinsci.plugins.workflow.libs.Library), so CodeNarc's enhanced rules can compile the
 * Jenkinsfiles in resources/ and the root (test/lib/codenarc.sh).
 */
@Retention(RetentionPolicy.SOURCE)
@interface Library {
    String[] value()
}
