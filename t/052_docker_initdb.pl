# docker/initdb/10_pg_booking.sh is what the Postgres image runs on its first
# start.  No Docker engine runs here, so run the script itself against a
# real cluster, with the environment the compose file gives it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('docker_initdb');
$node->init;
# The image's logging defaults (the test framework logs every statement).
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_booking'\nlog_statement = none\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE pg_booking');

my $script = "$ENV{TESTDIR}/docker/initdb/10_pg_booking.sh";
my $secret = 'docker-secret-0123456789abcdef0123456789abcdef';
my %env = (PGHOST => $node->host, PGPORT => $node->port, POSTGRES_USER => scalar(getpwuid($<)),
	POSTGRES_DB => 'pg_booking', PGB_JWT_SECRET => $secret,
	PGB_AUTHENTICATOR_PASSWORD => 'auth-pw-123', PGB_GRAFANA_DB_PASSWORD => 'grafana-pw-123',
	PGB_EXPORTER_DB_PASSWORD => 'exporter-pw-123');
my ($out, $err);
{
	local @ENV{ keys %env } = values %env;
	ok(IPC::Run::run([ 'bash', $script ], '>', \$out, '2>', \$err), 'the init script runs') or diag $err;
	delete local $ENV{PGB_JWT_SECRET};
	ok(!IPC::Run::run([ 'bash', $script ], '>', \$out, '2>', \$err), 'without a JWT secret it refuses');
	like($err, qr/PGB_JWT_SECRET is not set/, '... saying which variable is missing');
}
is($node->safe_psql('pg_booking', "SELECT extversion = default_version FROM pg_available_extensions JOIN pg_extension ON extname = name WHERE name = 'pg_booking'"), 't',
	'the extension is created at the installed version');
# The entrypoint restarts the server after the init scripts.
$node->restart;
is($node->safe_psql('pg_booking', "SELECT current_setting('pg_booking.jwt_secret')"), $secret,
	'the JWT secret is stored (superuser-only setting)');
is($node->safe_psql('pg_booking', "SELECT current_setting('pg_booking.checkout_database')"), 'pg_booking',
	'the nightly checkout works in the compose database');
is($node->safe_psql('pg_booking', q{SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_authid
	WHERE rolname IN ('booking_authenticator', 'booking_grafana', 'booking_exporter') AND rolcanlogin AND rolpassword IS NOT NULL}),
	'booking_authenticator,booking_exporter,booking_grafana', 'the adapter, exporter and Grafana roles can log in with passwords');
unlike(slurp_file($node->logfile), qr/auth-pw-123|grafana-pw-123|exporter-pw-123|\Q$secret\E/, 'no secret reached the server log');
$node->stop;
done_testing();
