package io.cicache

/**
 * The AWS context of a step: `region:` as AWS_REGION/AWS_DEFAULT_REGION, and `awsCredentialsId:`
 * (an "AWS Credentials" credential of the CloudBees AWS Credentials plugin) bound as
 * AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for the body only. The helper reads them through the
 * AWS SDK's chain (ECR logins, S3 and ECR stores, registry gc); the keys never reach a script.
 * Without either, the agent's own chain applies (instance profile, IRSA, ~/.aws, or an
 * enclosing withAWS/withCredentials block).
 */
class Aws implements Serializable {
    private static final long serialVersionUID = 1L

    static Object with(def steps, String region, String credentialsId, Closure body) {
        List<String> envs = region ? ["AWS_REGION=${region}".toString(), "AWS_DEFAULT_REGION=${region}".toString()] : []
        if (!credentialsId) {
            return steps.withEnv(envs) {
                body.call()
            }
        }
        return steps.withEnv(envs) {
            steps.withCredentials([steps.aws(credentialsId: credentialsId, accessKeyVariable: 'AWS_ACCESS_KEY_ID',
                                             secretKeyVariable: 'AWS_SECRET_ACCESS_KEY')]) {
                body.call()
            }
        }
    }
}
