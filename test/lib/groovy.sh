# Groovy tests of the Jenkins library (test/groovy/run.sh): Debian's Groovy 2.4 (the Groovy
# Jenkins runs) with JUnit 4 on Java 17. No service to start.
groovy_install() {
  apt_install groovy junit4 default-jre-headless curl
}
groovy_start() { :; }
groovy_stop() { :; }
