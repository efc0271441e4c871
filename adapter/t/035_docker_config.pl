# docker/ cannot be run here (no Docker engine), so check what can be
# checked: every ADAPTER_* variable the compose file and the Dockerfile set
# is a setting the adapter knows, the adapter listens beyond loopback in
# its image, the load balancer forwards to the port the adapter listens on
# and passes the client address, and every path the Dockerfiles COPY exists.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;

my $bin = $ENV{ADAPTER_BIN} or die 'ADAPTER_BIN is not set';
my $root = "$ENV{TESTDIR}/..";
my ($help, $err);
IPC::Run::run([ $bin, '--help' ], '>', \$help, '2>', \$err) or die "--help failed: $err";
my %known = map { $_ => 1 } $help =~ /\b(ADAPTER_[A-Z_]+)\b/g;
cmp_ok(scalar(keys %known), '>', 10, 'the adapter lists its settings');

my $compose = slurp_file("$root/docker/compose.yaml");
my $dockerfile = slurp_file("$root/docker/adapter.Dockerfile");
my @used = (($compose =~ /^\s*(ADAPTER_[A-Z_]+):/mg), ($dockerfile =~ /\b(ADAPTER_[A-Z_]+)=/g));
cmp_ok(scalar(@used), '>=', 4, 'compose and the Dockerfile configure the adapter');
is(join(' ', grep { !$known{$_} } @used), '', 'every ADAPTER_* variable they set is a known setting');
like($compose, qr/^\s*ADAPTER_DB:\s*postgresql:\/\/booking_authenticator:/m, 'the adapter signs in as booking_authenticator');
like($compose, qr/^\s*ADAPTER_JWT_SECRET:\s*\$\{PGB_JWT_SECRET\}/m, 'the adapter and the database share one secret from .env');
like($dockerfile, qr/ADAPTER_LISTEN=0\.0\.0\.0/, 'in its image the adapter listens beyond loopback');
like($compose, qr/^\s*ADAPTER_TRUSTED_PROXIES:/m, 'the adapter trusts the load balancer for client addresses');

my ($port) = $compose =~ /^\s*ADAPTER_PORT:\s*"?(\d+)"?/m;
my $nginx = slurp_file("$root/docker/nginx.conf");
like($nginx, qr/server\s+adapter:$port\b/, "nginx forwards to the adapter's port ($port)");
like($nginx, qr/proxy_set_header\s+X-Forwarded-For\s+\$remote_addr/, 'nginx passes the client address');
my ($listen) = $nginx =~ /^\s*listen\s+(\d+);/m;
like($compose, qr/^\s*-\s*"\$\{PGB_PUBLISH_ADDRESS:-127\.0\.0\.1\}:\$\{PGB_HTTP_PORT:-\d+\}:$listen"/m,
	"the published HTTP port is nginx's ($listen), on loopback unless told otherwise");
unlike($compose, qr/^\s*-\s*"\$\{[A-Z_]+_PORT/m, 'no published port without an address (default loopback)');

# What every compose implementation accepts (scripts/compose-test.sh runs
# them): no top-level name (docker-compose 1.29 rejects it); the images are
# built here from Debian, so each built service names its image.
unlike($compose, qr/^name:/m, 'no top-level name: in the compose file');
my @built = $compose =~ /^\s+dockerfile:\s*(docker\/\S+)/mg;
cmp_ok(scalar(@built), '>=', 4, 'postgres, adapter, nginx and Prometheus are built here');
ok(-e "$root/$_", "compose builds $_, which exists") for @built;
for my $df (glob("$root/docker/*.Dockerfile"))
{
	my $text = slurp_file($df);
	my @from = $text =~ /^FROM\s+(\S+)/mg;
	is(join(' ', grep { $_ ne 'debian:bookworm-slim' } @from), '', "$df: FROM debian:bookworm-slim only");
	my $user = ($text =~ /^USER\s+(\S+)/mg)[-1];
	ok(defined $user && $user ne 'root' && $user ne '0', "$df: runs as a non-root user");
	like($text, qr/^HEALTHCHECK\s/m, "$df: has a HEALTHCHECK");
}

for my $df (glob("$root/docker/*.Dockerfile"))
{
	for my $src (slurp_file($df) =~ /^COPY\s+(?!--from)(\S+)\s+\S+\s*$/mg)
	{
		ok(-e "$root/$src", "$df: COPY source $src exists");
	}
}
unlike(slurp_file("$root/.gitignore"), qr/^\.env\.example$/m, '.env.example is committed');
like(slurp_file("$root/.gitignore"), qr/^\.env$/m, '.env is not');
done_testing();
