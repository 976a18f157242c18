# Groovy tests of the Jenkins library (test/groovy/run.sh): Debian's Groovy 2.4 (the Groovy
# Jenkins runs) with JUnit 4, on Java 17 (JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64).
# curl is what the steps download the helper with, busybox-static what they fall back to on an
# Alpine docker:cli agent (HelperInstallTest). No service to start.
groovy_install() {
  apt_install groovy junit4 curl busybox-static
  if [ ! -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ] && ! command -v java >/dev/null 2>&1; then
    apt_install default-jre-headless
  fi
}
groovy_start() { :; }
groovy_stop() { :; }
