#!/bin/bash
# The project's recipe, described step by step in docs/reference/real-puppetserver.md. Unquoted expansions
# ($CA and $C split into words; temporary paths from mktemp have no spaces) are deliberate.
# shellcheck disable=SC2086,SC2206,SC2155,SC2034,SC2046,SC1010
# Real puppetserver 7.9.5 (Debian bookworm packages) for an integration test:
# no systemd, foreground JVM as root, all state under one temporary directory, exec ENC,
# pre-generated agent cert (no CSR/signing by the agent), revoke+clean => agent refused.
set -euo pipefail
P=${PUPPETSERVER_TEST_DIR:-$(mktemp -d)}; S=$P/server; A=$P/agent
SERVER_NAME=localhost          # resolves everywhere; CA puts DNS:puppet,DNS:localhost in the server cert
NODE=node1.example.test
CA="puppetserver ca"; C="--config $S/etc/puppet.conf"
log(){ echo "=== $(date +%T) $*"; }
# t EXPECTED_RC cmd...: run, show stdout/stderr separately, rc and wall time; abort on unexpected rc
t(){ local want=$1 s e rc; shift; s=$(date +%s.%N); set +e; "$@" >$P/.o 2>$P/.e; rc=$?; set -e; e=$(date +%s.%N)
     echo "\$ $*"; sed 's/^/  out| /' $P/.o; sed 's/^/  err| /' $P/.e
     printf '  -> rc=%s (expected %s) time=%.2fs\n' "$rc" "$want" "$(echo "$e - $s" | bc)"
     [ "$rc" = "$want" ] || { echo "UNEXPECTED EXIT CODE"; exit 1; }; }

# ---------- 0. packages (~55 s, ~104 MB download) ----------
if ! dpkg -s puppetserver puppet-agent >/dev/null 2>&1; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends puppetserver puppet-agent bc curl
fi

# ---------- 1. config, all under $S ----------
rm -rf "$S" "$A"
mkdir -p $S/{etc,conf.d,code/environments/production/{manifests,modules},var,run,log} $A/{etc,var,log,run}
# puppet.conf is read by the JRuby Puppet inside puppetserver AND by `puppetserver ca --config`.
# Everything in [main]: the ca CLI merges all sections; Debian's defaults for ssldir/cadir
# are hard-wired to /var/lib/puppet/ssl and /etc/puppet/puppetserver/ca, so set them explicitly.
cat > $S/etc/puppet.conf <<EOF
[main]
certname = $SERVER_NAME
server = $SERVER_NAME
ssldir = $S/ssl
cadir = $S/ca
vardir = $S/var
rundir = $S/run
logdir = $S/log
codedir = $S/code
[server]
node_terminus = exec
external_nodes = $P/enc.sh
autosign = false
EOF
cp /etc/puppet/puppetserver/conf.d/{auth.conf,ca.conf,metrics.conf,web-routes.conf} $S/conf.d/
cat > $S/conf.d/puppetserver.conf <<EOF
jruby-puppet: {
    ruby-load-path: [/usr/lib/puppetserver/ruby/vendor_ruby]
    gem-home: $S/var/jruby-gems
    gem-path: [\${jruby-puppet.gem-home}, "/usr/lib/puppetserver/vendored-jruby-gems"]
    server-conf-dir: $S/etc
    server-code-dir: $S/code
    server-var-dir: $S/var
    server-run-dir: $S/run
    server-log-dir: $S/log
    max-active-instances: 1
}
http-client: {}
profiler: {}
EOF
echo "global: { logging-config: $S/logback.xml }" > $S/conf.d/global.conf
# ssl-protocols TLSv1.2: works around a 30 s stall of `puppetserver ca clean` (Ruby Net::HTTP
# keep-alive + TLS 1.3 after a 204 reply waits for Jetty's 30 s idle timeout).
cat > $S/conf.d/webserver.conf <<EOF
webserver: {
    access-log-config: $S/request-logging.xml
    client-auth: want
    ssl-host: 127.0.0.1
    ssl-port: 8140
    ssl-protocols: [TLSv1.2]
}
EOF
cat > $S/logback.xml <<'EOF'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5p [%c{2}] %m%n</pattern></encoder>
  </appender>
  <root level="info"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF
cat > $S/request-logging.xml <<EOF
<configuration debug="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$S/log/access.log</file>
    <encoder><pattern>%h %u [%t] "%r" %s %b %D</pattern></encoder>
  </appender>
  <appender-ref ref="FILE"/>
</configuration>
EOF

# ---------- 2. exec ENC + a module ----------
cat > $P/enc.sh <<'EOF'
#!/bin/sh
case "$1" in
  node1.example.test) printf -- '---\nclasses:\n  motd:\n    message: "hello from ENC for %s"\nenvironment: production\nparameters:\n  enc_source: test\n' "$1" ;;
  *) printf -- '---\nclasses: {}\n' ;;
esac
EOF
chmod 755 $P/enc.sh
mkdir -p $S/code/environments/production/modules/motd/manifests
cat > $S/code/environments/production/modules/motd/manifests/init.pp <<EOF
class motd (String \$message = 'default') {
  notify { 'motd-applied': message => "motd class applied: \${message} (enc_source=\${::enc_source})" }
  file { '$A/motd.txt': ensure => file, content => "\${message}\n" }
}
EOF

# ---------- 3. CA (offline, server stopped) ----------
log "ca setup"; t 0 $CA setup $C; cat $P/.o | grep -q 'Generation succeeded'

# ---------- 4. start puppetserver in the foreground (backgrounded here), wait for ready ----------
log "start puppetserver"
T0=$(date +%s.%N)
( cd /usr/share/puppetserver && exec /usr/bin/java -Xms512m -Xmx1g \
    -Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger \
    -Djruby.lib=/usr/share/jruby/lib -XX:+CrashOnOutOfMemoryError \
    -jar /usr/share/puppetserver/puppetserver.jar \
    --config $S/conf.d --bootstrap-config /etc/puppet/puppetserver/services.d \
    >$S/log/server.out 2>&1 </dev/null ) &
SPID=$!; echo $SPID > $P/server.pid
trap 'kill -TERM $SPID 2>/dev/null || true' EXIT
for i in $(seq 1 360); do
  [ "$(curl -sk --max-time 2 https://$SERVER_NAME:8140/status/v1/simple || true)" = running ] && break
  kill -0 $SPID 2>/dev/null || { echo "puppetserver died"; tail -50 $S/log/server.out; exit 1; }
  sleep 0.5
done
printf 'ready after %.1fs, RSS %s kB\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$(ps -o rss= -p $SPID)"

# ---------- 5. CA CLI against the running server ----------
log "CA CLI"
t 0 $CA generate --certname $NODE $C        # rc 0 (prints a harmless 'Error: ... could not be found' first)
t 1 $CA generate --certname $NODE $C        # rc 1: Existing file at ...
t 0 $CA list --all $C
t 1 $CA revoke --certname nosuch.example.test $C   # rc 1
t 1 $CA clean  --certname nosuch.example.test $C   # rc 1

# ---------- 6. agent with the pre-generated cert (no CSR, no signing) ----------
install -d -m 771 $A/ssl; install -d -m 755 $A/ssl/certs; install -d -m 750 $A/ssl/private_keys
cp $S/ssl/certs/$NODE.pem        $A/ssl/certs/$NODE.pem
cp $S/ssl/private_keys/$NODE.pem $A/ssl/private_keys/$NODE.pem
cp $S/ssl/certs/ca.pem           $A/ssl/certs/ca.pem
cp $S/ssl/crl.pem                $A/ssl/crl.pem
: > $A/etc/puppet.conf
agent(){ puppet agent --onetime --no-daemonize --detailed-exitcodes --verbose --color=false \
    --certname $NODE --server $SERVER_NAME --serverport 8140 \
    --confdir $A/etc --vardir $A/var --ssldir $A/ssl --logdir $A/log --rundir $A/run \
    --waitforcert 0 --no-usecacheonfailure --no-splay "$@"; }
log "agent run 1 (expect rc 2)"; t 2 agent; cat $A/motd.txt
log "agent run 2, notify skipped (expect rc 0)"; t 0 agent --skip_tags notify
[ "$(grep -c certificate_request $S/log/access.log)" = 1 ]   # only the CLI's own CSR; the agent sent none

# ---------- 7. revoke + clean, agent must be refused ----------
log "revoke/clean"
t 0 $CA revoke --certname $NODE $C
t 0 $CA clean  --certname $NODE $C
t 1 $CA revoke --certname $NODE $C           # rc 1: already cleaned
# clean does NOT remove the copies generate wrote into the server ssldir; remove them
# before re-generating the same certname
rm -f $S/ssl/{certs,private_keys,public_keys}/$NODE.pem
log "agent run 3 (expect rc 1, TLS 'certificate unknown')"; t 1 agent

# ---------- 8. stop ----------
log "stop"; kill -TERM $SPID; while kill -0 $SPID 2>/dev/null; do sleep 0.2; done; trap - EXIT
echo done
