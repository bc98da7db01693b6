#!/bin/bash
# The project's recipe, described step by step in docs/reference/real-puppetdb.md. Unquoted expansions
# ($CA and $C split into words; temporary paths from mktemp have no spaces) are deliberate.
# shellcheck disable=SC2086,SC2206,SC2155,SC2034,SC2046,SC1010
# Real PuppetDB 7.12.1 + PostgreSQL 15 + puppetserver 7.9.5 + puppet-agent 7.23 (Debian bookworm
# packages) for an integration test: no systemd, every JVM and the database in the foreground
# (backgrounded here, stopped by PID), all state under one temporary directory.
# Shows: a throw-away PostgreSQL cluster; PuppetDB on the master's certificates; puppetserver storing
# facts/catalogs/reports in PuppetDB; deactivate_node (async, and synchronous with
# secondsToWaitForCompletion); an exec ENC with arguments; policy-based autosigning (no arguments
# possible) with a challengePassword + pp_role in csr_attributes.yaml; environment_classes + its
# auth.conf rule; `puppetserver ca generate` honouring csr_attributes.
#   PS_USER=puppet ./real-puppetdb.sh   runs puppetserver as user puppet (as Debian's unit does)
set -euo pipefail
P=${PUPPETDB_TEST_DIR:-$(mktemp -d)}; S=$P/server; D=$P/pdb; A=$P/agent; PG=$P/pg
PS_USER=${PS_USER:-root}
PG_PORT=54329; PDB_PORT=8081; PS_PORT=8140     # must be free
PGBIN=/usr/lib/postgresql/15/bin
CA="puppetserver ca"; C="--config $S/etc/puppet.conf"
log(){ echo "=== $(date +%T) $*"; }
el(){ printf '%.1f' "$(echo "$(date +%s.%N) - $1" | bc)"; }
# t EXPECTED_RC cmd...: run, show stdout/stderr, rc and wall time; abort on unexpected rc
t(){ local want=$1 s rc; shift; s=$(date +%s.%N); set +e; "$@" >$P/.o 2>$P/.e; rc=$?; set -e
     echo "\$ $*"; sed 's/^/  out| /' $P/.o; grep -v 'Facter: Permission denied' $P/.e | sed 's/^/  err| /' || true
     echo "  -> rc=$rc (expected $want) time=$(el $s)s"
     [ "$rc" = "$want" ] || { echo "UNEXPECTED EXIT CODE"; exit 1; }; }
MASTER_TLS="--cacert $S/ssl/certs/ca.pem --cert $S/ssl/certs/localhost.pem --key $S/ssl/private_keys/localhost.pem"
pdb(){ curl -sS --max-time 10 $MASTER_TLS "$@"; }            # PuppetDB needs a client certificate, even for /status
PDB=https://localhost:$PDB_PORT
node_field(){ pdb "$PDB/pdb/query/v4/nodes/$1" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2'))"; }

# ---------- 0. packages ----------
if ! dpkg -s puppetserver puppet-agent puppetdb puppet-terminus-puppetdb postgresql-15 >/dev/null 2>&1; then
  apt-get update
  # policy-rc.d in containers stops the services from starting; dbconfig's DB creation fails harmlessly
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    puppetserver puppet-agent puppetdb puppet-terminus-puppetdb postgresql-15 bc curl python3
fi

PIDS=()
stop_all(){ for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; }
trap stop_all EXIT
chmod 711 $P                     # postgres (and puppet) must traverse it
rm -rf $S $D $A $PG
mkdir -p $S/{etc,conf.d,code/environments/production/{manifests,modules},var,run,log} $D/{conf.d,var,log} $A

# ---------- 1. PostgreSQL 15: throw-away cluster owned by postgres, foreground ----------
log "postgresql"
install -d -o postgres -g postgres -m 700 $PG
s=$(date +%s.%N)
t 0 setpriv --reuid=postgres --regid=postgres --init-groups $PGBIN/initdb -D $PG/data -U postgres \
     --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8
# setpriv execs (no extra process): the PID is the postmaster's. SIGINT = fast shutdown (SIGTERM would
# wait for PuppetDB's pooled connections to close).
( cd / && exec setpriv --reuid=postgres --regid=postgres --init-groups $PGBIN/postgres -D $PG/data \
    -k $PG -p $PG_PORT -c listen_addresses=127.0.0.1 >$PG/postgres.log 2>&1 </dev/null ) &
PGPID=$!; PIDS+=($PGPID)
for i in $(seq 1 100); do $PGBIN/pg_isready -q -h 127.0.0.1 -p $PG_PORT && break; sleep 0.1; done
echo "postgres ready $(el $s)s after initdb start (pid $PGPID)"
PSQL="psql -X -q -v ON_ERROR_STOP=1 -h $PG -p $PG_PORT -U postgres"
$PSQL -c "CREATE ROLE puppetdb LOGIN PASSWORD 'puppetdb-test-pw'"
$PSQL -c "CREATE DATABASE puppetdb OWNER puppetdb ENCODING 'UTF8' TEMPLATE template0"
$PSQL -d puppetdb -c "CREATE EXTENSION pg_trgm"   # optional in 7.12 (only a WARN without it); Debian's dbconfig adds it

# ---------- 2. puppetserver config (as real-puppetserver.sh) + PuppetDB terminus, ENC, autosign ----------
cat > $S/etc/puppet.conf <<EOF
[main]
certname = localhost
server = localhost
ssldir = $S/ssl
cadir = $S/ca
vardir = $S/var
rundir = $S/run
logdir = $S/log
codedir = $S/code
csr_attributes = $S/etc/csr_attributes.yaml
[server]
node_terminus = exec
external_nodes = $P/enc.sh --from-setting two-args
autosign = $P/autosign.sh --an-argument
storeconfigs = true
storeconfigs_backend = puppetdb
reports = puppetdb
EOF
printf '[main]\nserver_urls = https://localhost:%s\n' $PDB_PORT > $S/etc/puppetdb.conf
printf -- '---\nmaster:\n  facts:\n    terminus: puppetdb\n    cache: yaml\n' > $S/etc/routes.yaml
# read by `puppetserver ca generate` (csr_attributes above), not by the server
printf -- '---\nextension_requests:\n  pp_role: web\n  1.3.6.1.4.1.34380.1.2.1: private-value\n' > $S/etc/csr_attributes.yaml
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
printf 'webserver: {\n  access-log-config: %s\n  client-auth: want\n  ssl-host: 127.0.0.1\n  ssl-port: %s\n  ssl-protocols: [TLSv1.2]\n}\n' \
  $S/request-logging.xml $PS_PORT > $S/conf.d/webserver.conf
for X in $S $D; do
  printf '<configuration>\n <appender name="O" class="ch.qos.logback.core.ConsoleAppender"><encoder><pattern>%%d{HH:mm:ss.SSS} %%-5p [%%c{2}] %%m%%n</pattern></encoder></appender>\n <root level="info"><appender-ref ref="O"/></root>\n</configuration>\n' > $X/logback.xml
  printf '<configuration debug="false">\n <appender name="F" class="ch.qos.logback.core.FileAppender"><file>%s/log/access.log</file><encoder><pattern>%%h %%u [%%t] "%%r" %%s %%b %%D</pattern></encoder></appender>\n <appender-ref ref="F"/>\n</configuration>\n' $X > $X/request-logging.xml
done
# ENC: logs who/argv/env, answers per certname
cat > $P/enc.sh <<EOF
#!/bin/sh
{ echo "--- uid=\$(id -un) cwd=\$(pwd) argv=\$*"; env | sort | sed 's/^/  env /'; } >> $S/log/enc.log
for n in "\$@"; do :; done
case "\$n" in
  encfail.example.test) echo "enc refuses \$n" >&2; exit 1 ;;
  *) printf -- '---\nclasses:\n  role::web:\n    msg: "from the ENC for %s"\nparameters:\n  enc_param: top-scope\nenvironment: production\n' "\$n" ;;
esac
EOF
# autosign policy executable: certname in argv, CSR PEM on stdin; exit code from a file
cat > $P/autosign.sh <<EOF
#!/bin/sh
csr=\$(cat)
{ echo "--- uid=\$(id -un) cwd=\$(pwd) argv=\$*"; env | sort | sed 's/^/  env /'; } >> $S/log/autosign.log
printf '%s\n' "\$csr" > $S/log/last.csr
rc=\$(cat $P/autosign.rc)
[ "\$rc" = 0 ] || echo "autosign refuses \$1" >&2    # stderr is logged by puppetserver at WARN
exit \$rc
EOF
chmod 755 $P/enc.sh $P/autosign.sh; echo 0 > $P/autosign.rc; chmod 644 $P/autosign.rc
M=$S/code/environments/production/modules/role/manifests; mkdir -p $M
cat > $M/web.pp <<EOF
# @summary a web server
class role::web (String \$msg = 'default', Integer \$port = 80) {
  \$r = \$trusted['extensions']['pp_role']
  notify { 'role-web': message => "msg=\${msg} pp_role=\${r} enc_param=\${::enc_param}" }
  file { "$A/out-\${trusted['certname']}.txt": ensure => file, content => "msg=\${msg}\npp_role=\${r}\n" }
}
EOF
echo 'class role::db { }' > $M/db.pp

# ---------- 3. CA (offline) ----------
log "ca setup"; t 0 $CA setup $C

# ---------- 4. PuppetDB: conf.d under $D, the master's host certificate, TLS only ----------
cat > $D/conf.d/config.ini <<EOF
[global]
vardir = $D/var
logging-config = $D/logback.xml
[command-processing]
EOF
cat > $D/conf.d/database.ini <<EOF
[database]
subname = //127.0.0.1:$PG_PORT/puppetdb
username = puppetdb
password = puppetdb-test-pw
EOF
# no `port` = no plain-HTTP listener; client-auth defaults to need; no certificate-allowlist = any CA-signed cert
cat > $D/conf.d/jetty.ini <<EOF
[jetty]
ssl-host = 127.0.0.1
ssl-port = $PDB_PORT
ssl-key = $S/ssl/private_keys/localhost.pem
ssl-cert = $S/ssl/certs/localhost.pem
ssl-ca-cert = $S/ssl/certs/ca.pem
access-log-config = $D/request-logging.xml
EOF
cp /etc/puppetdb/conf.d/auth.conf $D/conf.d/   # only guards /metrics; /pdb is not governed by it
start_pdb(){ ( cd / && exec /usr/bin/java -Xmx192m -Djava.security.egd=/dev/urandom -XX:OnOutOfMemoryError="kill -9 %p" \
    -cp /usr/share/puppetdb/puppetdb.jar clojure.main -m puppetlabs.puppetdb.core services \
    --config $D/conf.d --bootstrap-config /etc/puppetdb/bootstrap.cfg >>$D/log/pdb.out 2>&1 </dev/null ) &
  PDBPID=$!; PIDS+=($PDBPID); local s=$(date +%s.%N)
  for i in $(seq 1 480); do
    pdb "$PDB/status/v1/services/puppetdb-status" 2>/dev/null | grep -q '"state":"running"' && break
    kill -0 $PDBPID 2>/dev/null || { echo "puppetdb died"; tail -40 $D/log/pdb.out; exit 1; }; sleep 0.5
  done
  echo "puppetdb ready after $(el $s)s, RSS $(ps -o rss= -p $PDBPID) kB (pid $PDBPID)"; }
log "start puppetdb"; start_pdb
pdb "$PDB/status/v1/services/puppetdb-status"; echo
echo "status without a client certificate:"; curl -sS --cacert $S/ssl/certs/ca.pem "$PDB/status/v1/simple" 2>&1 | sed 's/^/  /' || true

# ---------- 5. puppetserver (root, or PS_USER) ----------
if [ "$PS_USER" != root ]; then chown -R "$PS_USER": $S; fi
ps_ready_count(){ grep -c 'successfully started and is now ready' $S/log/server.out 2>/dev/null || true; }
log "start puppetserver as $PS_USER"; s=$(date +%s.%N)
( cd /usr/share/puppetserver && exec setpriv --reuid=$PS_USER --regid=$PS_USER --init-groups \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$(getent passwd $PS_USER | cut -d: -f6) LANG=C.UTF-8 MARKER=jvm-env \
    /usr/bin/java -Xms512m -Xmx1g -Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger \
    -Djruby.lib=/usr/share/jruby/lib -XX:+CrashOnOutOfMemoryError -jar /usr/share/puppetserver/puppetserver.jar \
    --config $S/conf.d --bootstrap-config /etc/puppet/puppetserver/services.d >$S/log/server.out 2>&1 </dev/null ) &
SPID=$!; PIDS+=($SPID)
for i in $(seq 1 480); do [ "$(ps_ready_count)" -ge 1 ] && break; kill -0 $SPID 2>/dev/null || { tail -40 $S/log/server.out; exit 1; }; sleep 0.5; done
echo "puppetserver ready after $(el $s)s, RSS $(ps -o rss= -p $SPID) kB, user $(ps -o user= -p $SPID)"

AG=(puppet agent --onetime --no-daemonize --detailed-exitcodes --verbose --color=false --server localhost
    --serverport $PS_PORT --waitforcert 0 --no-usecacheonfailure --no-splay)
agent(){ local n=$1; shift; mkdir -p $A/$n/{etc,var,log,run}; touch $A/$n/etc/puppet.conf
  t "$1" "${AG[@]}" --certname $n --confdir $A/$n/etc --vardir $A/$n/var --ssldir $A/$n/ssl \
    --logdir $A/$n/log --rundir $A/$n/run; }
token_node(){ mkdir -p $A/$1/etc; printf -- '---\ncustom_attributes:\n  1.2.840.113549.1.9.7: "%s"\nextension_requests:\n  pp_role: web\n' "$2" > $A/$1/etc/csr_attributes.yaml; }
presigned(){ install -d -m 771 $A/$1/ssl; install -d $A/$1/ssl/certs; install -d -m 750 $A/$1/ssl/private_keys
  cp $S/ssl/certs/$1.pem $S/ssl/certs/ca.pem $A/$1/ssl/certs/; cp $S/ssl/private_keys/$1.pem $A/$1/ssl/private_keys/; }
MC(){ curl -sS --max-time 30 $MASTER_TLS "$@"; }

# ---------- 6. environment_classes: 403 under the stock auth.conf ----------
log "environment_classes"
MC -o /dev/null -w 'stock auth.conf: %{http_code}\n' "https://localhost:$PS_PORT/puppet/v3/environment_classes?environment=production"

# ---------- 7. autosign with an argument: the script is never run ----------
log "autosign = '$P/autosign.sh --an-argument' (not a file => never executed, CSR left pending)"
token_node toka.example.test tokenAAA111; agent toka.example.test 1
echo "autosign.log lines: $(cat $S/log/autosign.log 2>/dev/null | wc -l)"

# ---------- 8. fix both, SIGHUP (reloads puppet.conf and auth.conf) ----------
sed -i "s#^autosign = .*#autosign = $P/autosign.sh#" $S/etc/puppet.conf
python3 - $S/conf.d/auth.conf <<'EOF'
import sys; p=sys.argv[1]; t=open(p).read(); i=t.index('rules: [')+len('rules: [\n')
open(p,'w').write(t[:i]+'''        {
            match-request: { path: "/puppet/v3/environment_classes", type: path, method: get }
            allow: "localhost"
            sort-order: 500
            name: "espm environment classes"
        },
'''+t[i:])
EOF
n0=$(ps_ready_count); s=$(date +%s.%N); kill -HUP $SPID
for i in $(seq 1 240); do [ "$(ps_ready_count)" -gt "$n0" ] && break; sleep 0.25; done; echo "SIGHUP reload took $(el $s)s"
MC -w '\n=> %{http_code}\n' "https://localhost:$PS_PORT/puppet/v3/environment_classes?environment=production"

# ---------- 9. policy autosigning: exit 0 signs, exit 1 leaves the CSR pending ----------
log "autosign exit 0"
token_node tokb.example.test tokenBBB222; agent tokb.example.test 2
cat $A/out-tokb.example.test.txt
sed -n '1,20p' $S/log/autosign.log
openssl req -in $S/log/last.csr -noout -text | sed -n '/Attributes:/,/Signature Algorithm/p'
openssl asn1parse -in $S/log/last.csr | grep -A3 -E 'challengePassword|34380'
openssl x509 -in $A/tokb.example.test/ssl/certs/tokb.example.test.pem -noout -text | grep -A1 '34380'
log "autosign exit 1"; echo 1 > $P/autosign.rc
token_node tokc.example.test tokenCCC333; agent tokc.example.test 1
MC "https://localhost:$PS_PORT/puppet-ca/v1/certificate_status/tokc.example.test" | python3 -c 'import json,sys; print("CA state:", json.load(sys.stdin)["state"])'
echo 0 > $P/autosign.rc; rm -rf $A/tokc.example.test/ssl                 # a fresh key, a second CSR for the name
n=$(grep -c -- '^---' $S/log/autosign.log); agent tokc.example.test 1
echo "autosign runs for the second CSR: $(( $(grep -c -- '^---' $S/log/autosign.log) - n ))"; grep 'already has a requested' $S/log/server.out | tail -1
grep -E "rejected certificate|generated output to stderr" $S/log/server.out | tail -2

# ---------- 10. ca generate reads csr_attributes; also runs the autosign executable ----------
log "ca generate with csr_attributes (autosign exits 1: the CLI signs)"; echo 1 > $P/autosign.rc
t 0 $CA generate --certname gen1.example.test $C
openssl x509 -in $S/ssl/certs/gen1.example.test.pem -noout -text | grep -A1 -E '34380|Alternative'
log "ca generate, autosign exits 0"; echo 0 > $P/autosign.rc
t 0 $CA generate --certname gen2.example.test $C
MC -X PUT -H 'Content-Type: application/json' -d '{"desired_state":"signed"}' -w ' => %{http_code}\n' \
  "https://localhost:$PS_PORT/puppet-ca/v1/certificate_status/gen2.example.test"

# ---------- 11. exec ENC, agent with a pregenerated cert, PuppetDB ----------
log "agent gen1 (presigned, pp_role from csr_attributes)"; presigned gen1.example.test; agent gen1.example.test 2
sed -n '1,12p' $S/log/enc.log
pdb "$PDB/pdb/query/v4/nodes/gen1.example.test"; echo
t 0 puppetserver ca generate --certname encfail.example.test $C; presigned encfail.example.test
log "ENC exit 1 => catalog 500 => agent exit 1"; agent encfail.example.test 1
echo "encfail report status in PuppetDB: $(node_field encfail.example.test latest_report_status)"

# ---------- 12. deactivate_node ----------
log "deactivate_node (async)"
ts=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ); s=$(date +%s.%N)
pdb -X POST -H 'Content-Type: application/json' -d "{\"certname\":\"gen1.example.test\",\"producer_timestamp\":\"$ts\"}" \
  "$PDB/pdb/cmd/v1?command=deactivate_node&version=3&certname=gen1.example.test"; echo " POST took $(el $s)s"
for i in $(seq 1 100); do [ "$(node_field gen1.example.test deactivated)" != None ] && break; sleep 0.05; done
echo "deactivated=$(node_field gen1.example.test deactivated) visible after $(el $s)s"
echo "default node list: $(pdb "$PDB/pdb/query/v4/nodes" | python3 -c 'import json,sys; print(sorted(n["certname"] for n in json.load(sys.stdin)))')"
log "deactivate_node, synchronous (secondsToWaitForCompletion)"
pdb -X POST -H 'Content-Type: application/json' -d "{\"certname\":\"tokb.example.test\",\"producer_timestamp\":\"$ts\"}" \
  "$PDB/pdb/cmd/v1?command=deactivate_node&version=3&certname=tokb.example.test&secondsToWaitForCompletion=10"; echo
log "unknown certname"
pdb -o /dev/null -w 'GET before: %{http_code}\n' "$PDB/pdb/query/v4/nodes/nosuch.example.test"
pdb -X POST -H 'Content-Type: application/json' -d "{\"certname\":\"nosuch.example.test\",\"producer_timestamp\":\"$ts\"}" \
  -w ' => %{http_code}\n' "$PDB/pdb/cmd/v1?command=deactivate_node&version=3&certname=nosuch.example.test&secondsToWaitForCompletion=10"
pdb -w ' => %{http_code}\n' "$PDB/pdb/query/v4/nodes/nosuch.example.test" | tr -d '\n '; echo
pdb -w ' => %{http_code}\n' -X POST -H 'Content-Type: application/json' -d '{"certname":"x"}' "$PDB/pdb/cmd/v1?command=deactivate_node&version=3"
log "a later agent run reactivates"; agent gen1.example.test 2
echo "deactivated=$(node_field gen1.example.test deactivated)"

# ---------- 13. PuppetDB down, then back ----------
log "stop puppetdb"; s=$(date +%s.%N); kill -TERM $PDBPID; while kill -0 $PDBPID 2>/dev/null; do sleep 0.1; done; echo "stopped in $(el $s)s"
set +e; pdb "$PDB/pdb/query/v4/nodes/gen1.example.test" >/dev/null 2>$P/.e; echo "curl rc=$? $(cat $P/.e)"; set -e
log "restart puppetdb"; start_pdb

# ---------- 14. stop everything ----------
log "stop"
for pid in $SPID $PDBPID; do s=$(date +%s.%N); kill -TERM $pid; while kill -0 $pid 2>/dev/null; do sleep 0.2; done; echo "pid $pid stopped in $(el $s)s"; done
s=$(date +%s.%N); kill -INT $PGPID; while kill -0 $PGPID 2>/dev/null; do sleep 0.1; done; echo "postgres stopped in $(el $s)s"
trap - EXIT
echo "done (state in $P)"
