# The observability files, checked with the real tools where they exist
# here (promtool from Debian's prometheus package) and structurally where
# they do not (no Docker engine, Loki, promtail or Grafana runs here):
# Prometheus's configuration and rules, the compose services that run them,
# log collection, the Grafana data sources and the dashboards' shared range,
# refresh and colours.  adapter/t/046_prometheus.pl runs every expression.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use YAML::XS ();

my $root = "$ENV{TESTDIR}/..";
my $dir = "$root/docker/prometheus";

sub run_tool
{
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([@_], '>', \$out, '2>', \$err);
	return ($ok, "$out$err");
}

# --- promtool ---
my ($ok, $out) = run_tool('promtool', 'check', 'config', "$dir/prometheus.yml");
ok($ok, 'promtool check config docker/prometheus/prometheus.yml') or diag $out;
like($out, qr/SUCCESS: 1 rule files found/, '... with its rule file');
($ok, $out) = run_tool('promtool', 'check', 'rules', "$dir/alerts.yml");
ok($ok, 'promtool check rules docker/prometheus/alerts.yml') or diag $out;
like($out, qr/SUCCESS: 4 rules found/, '... 4 rules');

# The four alerts the operators asked for, with their thresholds.
my $rules = YAML::XS::LoadFile("$dir/alerts.yml");
my %alert = map { $_->{alert} => $_ } map { @{ $_->{rules} } } @{ $rules->{groups} };
is($alert{PgBookingBreakerOpen}{for}, '1m', 'breaker open for more than 1 min');
like($alert{PgBookingBreakerOpen}{expr}, qr/pg_booking_breaker_state\{state="open"\}/, '... from the breaker state');
like($alert{PgBookingHighErrorRatio}{expr}, qr/>\s*0\.05\s*$/, 'error ratio over 5 %');
like($alert{PgBookingCheckoutNotRun}{expr}, qr/>\s*26 \* 3600\s*$/, 'checkout not run for 26 h');
like($alert{PgBookingSlowRoute}{expr}, qr/histogram_quantile\(0\.99,.*\)\s*>\s*0\.5\s*$/s, 'p99 over 500 ms');
ok(!grep({ !$_->{annotations}{summary} } values %alert), 'every alert says what is wrong');

# --- compose ---
my $compose_text = slurp_file("$root/docker/compose.yaml");
my $compose = YAML::XS::Load($compose_text);
ok(!exists $compose->{name}, 'no top-level name: (docker-compose 1.29 refuses it)');
my $svc = $compose->{services};
ok($svc->{$_}, "compose runs $_") for qw(postgres adapter prometheus postgres-exporter loki promtail grafana);
is($svc->{adapter}{deploy}{replicas}, 2, 'two adapter replicas');
for my $name (sort keys %$svc)
{
	for my $v (@{ $svc->{$name}{volumes} // [] })
	{
		my ($src) = split /:/, $v;
		if ($src =~ m{^\.})
		{
			ok(-e "$root/docker/$src", "$name mounts $src, which exists");
		}
		elsif ($src !~ m{^/})
		{
			ok(exists $compose->{volumes}{$src}, "$name: volume $src is declared");
		}
	}
	for my $dep (ref $svc->{$name}{depends_on} eq 'HASH' ? keys %{ $svc->{$name}{depends_on} } : @{ $svc->{$name}{depends_on} // [] })
	{
		ok($svc->{$dep}, "$name depends on $dep, a service");
	}
}
like(join(' ', @{ $svc->{prometheus}{ports} }), qr/^"?127\.0\.0\.1:/, 'Prometheus is published on the host loopback only');
ok(!$svc->{loki}{ports} && !$svc->{'postgres-exporter'}{ports}, 'Loki and the exporter are not published');
like($svc->{'postgres-exporter'}{environment}{DATA_SOURCE_NAME}, qr{^postgresql://booking_exporter:\$\{PGB_EXPORTER_DB_PASSWORD\}\@postgres:5432/},
	'the exporter signs in as booking_exporter');
like(join(' ', @{ $svc->{'postgres-exporter'}{command} }), qr/--extend\.query-path=\S+/, 'the exporter runs the custom queries');
like($svc->{postgres}{environment}{PGB_EXPORTER_DB_PASSWORD}, qr/:\?/, 'the exporter password is required');
like(slurp_file("$root/.env.example"), qr/^PGB_EXPORTER_DB_PASSWORD=/m, '.env.example lists it');
like(slurp_file("$root/docker/initdb/10_pg_booking.sh"), qr/ALTER ROLE booking_exporter LOGIN PASSWORD/, 'the init script lets it log in');
like(slurp_file("$root/docker/postgres.Dockerfile"), qr/log_line_prefix=[^"]*%a/, 'the server log names the request (application_name)');
like(slurp_file("$root/docker/nginx.conf"), qr{location = /metrics \{\s*return 404;}, 'the load balancer does not publish /metrics');

# Prometheus scrapes what compose runs, where it listens.
my $prom = YAML::XS::LoadFile("$dir/prometheus.yml");
my %job = map { $_->{job_name} => $_ } @{ $prom->{scrape_configs} };
my $sd = $job{pg_booking_adapter}{dns_sd_configs}[0];
is_deeply([ $sd->{names}, $sd->{port} ], [ ['adapter'], $svc->{adapter}{environment}{ADAPTER_PORT} ],
	'every adapter replica is scraped (DNS of the service, the port it listens on)');
is($job{postgres}{static_configs}[0]{targets}[0], 'postgres-exporter:9187', 'the exporter is scraped');
my $prom_mount = (grep { /^\.\/prometheus:/ } @{ $svc->{prometheus}{volumes} })[0];
like(join(' ', @{ $svc->{prometheus}{command} }), qr{--config\.file=/etc/prometheus/prometheus\.yml}, 'Prometheus reads the checked file');
like($prom_mount, qr{:/etc/prometheus}, '... mounted where it looks');

# --- logs: promtail -> Loki -> Grafana ---
my $loki = YAML::XS::LoadFile("$root/docker/loki/loki.yaml");
my $promtail = YAML::XS::LoadFile("$root/docker/loki/promtail.yaml");
is($promtail->{clients}[0]{url}, "http://loki:$loki->{server}{http_listen_port}/loki/api/v1/push", 'promtail pushes to Loki');
my ($relabel) = grep { ($_->{target_label} // '') eq 'service' } @{ $promtail->{scrape_configs}[0]{relabel_configs} };
is_deeply($relabel->{source_labels}, ['__meta_docker_container_label_com_docker_compose_service'], 'log lines are labelled by compose service');
ok(grep({ m{/var/run/docker\.sock} } @{ $svc->{promtail}{volumes} }), 'promtail reads the containers through the Docker socket');
ok(!grep({ ($_->{target_label} // '') =~ /request_id|error_code/ } @{ $promtail->{scrape_configs}[0]{relabel_configs} }),
	'request ids are not labels (unbounded)');

# --- Grafana data sources ---
my $ds = YAML::XS::LoadFile("$root/grafana/provisioning/datasources/pg_booking.yaml");
my %ds = map { $_->{uid} => $_ } @{ $ds->{datasources} };
is($ds{prometheus}{type}, 'prometheus', 'a Prometheus data source next to the PostgreSQL one');
is($ds{prometheus}{url}, 'http://prometheus:9090', '... the compose Prometheus');
is($ds{loki}{url}, "http://loki:$loki->{server}{http_listen_port}", 'a Loki data source, the compose Loki');
is(scalar(grep { $_->{isDefault} } values %ds), 1, 'one default data source');

# --- dashboards: one range, refresh and colour scheme; logs per service ---
my %colour;    # series name or pattern => fixed colour, the same in every dashboard
my @dashboards = glob("$root/grafana/dashboards/*.json");
cmp_ok(scalar(@dashboards), '>=', 2, 'two dashboards');
my %titles;
for my $file (@dashboards)
{
	my $d = decode_json(slurp_file($file));
	$titles{ $d->{title} } = $d;
	is($d->{refresh}, '10s', "$d->{title}: 10 s refresh");
	is_deeply($d->{time}, { from => 'now-24h', to => 'now' }, "$d->{title}: 24 h range");
	for my $p (@{ $d->{panels} })
	{
		ok($ds{ $p->{datasource}{uid} // '' }, "$d->{title} / $p->{title}: a provisioned data source");
		is($p->{fieldConfig}{defaults}{color}{mode}, 'palette-classic', "$d->{title} / $p->{title}: the shared palette");
		for my $o (@{ $p->{fieldConfig}{overrides} })
		{
			my ($c) = map { $_->{value}{fixedColor} } grep { $_->{id} eq 'color' } @{ $o->{properties} };
			next unless $c;
			my $key = $o->{matcher}{options};
			$colour{$key} //= $c;
			is($c, $colour{$key}, "$d->{title} / $p->{title}: \"$key\" is $colour{$key} everywhere");
		}
	}
}
my $health = $titles{'API health'};
ok($health, 'the "API health" dashboard is provisioned');
my %vars = map { $_->{name} => $_ } @{ $health->{templating}{list} };
ok($vars{request_id} && $vars{error_code}, 'logs are filterable by request id and error_code');
my %logs = map { ($_->{targets}[0]{expr} =~ /\{service="([^"]+)"\}/)[0] => $_ } grep { $_->{type} eq 'logs' } @{ $health->{panels} };
for my $s (sort keys %$svc)
{
	my $p = $logs{$s};
	ok($p, "a logs panel for the compose service $s") or next;
	is($p->{datasource}{uid}, 'loki', '... read from Loki');
	like($p->{targets}[0]{expr}, qr/\$request_id/, '... filtered by request id');
}
is(join(',', grep { !$svc->{$_} } sort keys %logs), '', 'every logs panel reads a compose service');
like($logs{adapter}{targets}[0]{expr}, qr/\| json \| error_code =~ "\$error_code"/, "the adapter's logs by error_code (a JSON field)");
done_testing();
