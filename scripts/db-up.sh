#!/usr/bin/env bash
# Makes sure the test database servers run on loopback, starting (and on a
# fresh machine installing, via deps.sh) them when needed:
#   MariaDB    127.0.0.1:3306, user root, empty password, database `test`
#   PostgreSQL 127.0.0.1:5432, trust auth, users root and postgres
# Usage: scripts/db-up.sh [mysql] [postgres]   (default: both)
# Exits non-zero if a server cannot be reached; under CI=true that fails the run.
set -uo pipefail
want=("$@")
[ ${#want[@]} -eq 0 ] && want=(mysql postgres)
fail=0

wait_for() { # name, probe command
  for _ in $(seq 1 60); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "db-up: $1 is not reachable" >&2
  return 1
}

mysql_up() {
  local probe="mariadb -h127.0.0.1 -P3306 -uroot -e 'SELECT 1'"
  eval "$probe" >/dev/null 2>&1 && return 0
  if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
    echo "db-up: mariadb-server is not installed" >&2; return 1
  fi
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null 2>&1 || true
  fi
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql >/dev/null 2>&1
  wait_for MariaDB "$probe" || return 1
  # Fresh installs: root over TCP with an empty password, and the `test` database.
  mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); \
    CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; \
    GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; CREATE DATABASE IF NOT EXISTS test;" >/dev/null 2>&1 || true
  wait_for MariaDB "$probe"
}

postgres_up() {
  local probe="psql -h127.0.0.1 -p5432 -Upostgres -d postgres -c 'SELECT 1'"
  eval "$probe" >/dev/null 2>&1 && return 0
  local ver
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$ver" ]; then echo "db-up: postgresql is not installed" >&2; return 1; fi
  local conf=/etc/postgresql/$ver/main
  # Trust authentication on loopback only (a test server).
  if ! grep -q "lunet-test" "$conf/pg_hba.conf" 2>/dev/null; then
    { echo "# lunet-test: trust on loopback"
      echo "host all all 127.0.0.1/32 trust"
      echo "host all all ::1/128 trust"
      echo "local all all trust"
      cat "$conf/pg_hba.conf"; } > /tmp/pg_hba.$$ && cat /tmp/pg_hba.$$ > "$conf/pg_hba.conf" && rm -f /tmp/pg_hba.$$
  fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start >/dev/null 2>&1 || true
  wait_for PostgreSQL "$probe" || return 1
  psql -h127.0.0.1 -Upostgres -d postgres -tc "SELECT 1 FROM pg_roles WHERE rolname='root'" | grep -q 1 ||
    psql -h127.0.0.1 -Upostgres -d postgres -c "CREATE ROLE root SUPERUSER LOGIN" >/dev/null
  psql -h127.0.0.1 -Upostgres -d postgres -tc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 ||
    psql -h127.0.0.1 -Upostgres -d postgres -c "CREATE DATABASE test" >/dev/null
}

for db in "${want[@]}"; do
  case $db in
    mysql) mysql_up || fail=1 ;;
    postgres) postgres_up || fail=1 ;;
    *) echo "db-up: unknown database $db" >&2; fail=1 ;;
  esac
done
exit $fail
