# Observability with the real tools: a real Prometheus (Debian's package,
# loopback only, temporary data folder, 1 s scrapes) scrapes two real
# adapters and a real prometheus-postgres-exporter (with the extension's
# custom queries) in front of a test cluster, and evaluates the alerting
# rules of docker/prometheus/alerts.yml.  We drive traffic (bookings that
# succeed, clashes, logins refused by the rate limit, requests slowed by a
# lock, a breaker opened by real statement timeouts, an event stream), then
# run every PromQL expression of every dashboard panel (read from the
# dashboard JSON) and of every alert (as Prometheus itself loaded them)
# through Prometheus's HTTP API, and check the series, their labels and
# their values against what we sent.  A panel whose query returns nothing
# fails; so does a panel this test has no expectation for.
#
# Negative control: before the traffic, every alert expression must return
# nothing (so the checks that they fire afterwards can fail).
use strict;
use warnings;
use lib 't';
use AdapterTest;
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX ':sys_wait_h';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use YAML::XS ();

my $root = "$ENV{TESTDIR}/..";
my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my @children;    # servers we start, stopped at the end (or when we die)
END { kill 'TERM', @children if @children; }

# --- the cluster, two adapters, the exporter ---
my $node = setup_node();
$node->safe_psql('postgres', q{
ALTER ROLE booking_exporter LOGIN;
UPDATE booking.rate_limits SET max_requests = 3, window_length = '10 min' WHERE endpoint = 'login';
INSERT INTO booking.rooms (name, location, capacity) VALUES ('Observatory', 'HQ', 6);
});
my $room = $node->safe_psql('postgres', q{SELECT id FROM booking.rooms WHERE name = 'Observatory'});
my $uid = make_user($node, 'obs-user@example.com', 'user');
my $admin_id = make_user($node, 'obs-admin@example.com', 'admin');
my $token = mint_jwt({ sub => "$uid", role => 'booking_user', exp => time + 3600 });
my $admin = mint_jwt({ sub => "$admin_id", role => 'booking_admin', exp => time + 3600 });

# The first replica's 4 connections are all busy during the lock below, so
# two requests wait for one (up to 5 s).
my $a1 = start_adapter($node, env => { ADAPTER_POOL_WAIT_MS => 5000 });
# The second replica opens its breaker after two statement timeouts and
# keeps it open for the rest of the test.
my $a2 = start_adapter($node, env => { ADAPTER_STATEMENT_TIMEOUT_MS => 300, ADAPTER_BREAKER_FAILURES => 2,
	ADAPTER_BREAKER_OPEN_MS => 600000 });

sub spawn
{
	my ($log, @cmd) = @_;
	my %env = %{ ref $cmd[0] eq 'HASH' ? shift @cmd : {} };
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		$ENV{$_} = $env{$_} for keys %env;
		open STDOUT, '>', $log or die;
		open STDERR, '>&', \*STDOUT or die;
		exec @cmd or die "exec $cmd[0]: $!";
	}
	push @children, $pid;
	return $pid;
}

sub wait_http
{
	my ($url, $what, $pid) = @_;
	my $deadline = time + 30;
	while (time < $deadline)
	{
		my $r = HTTP::Tiny->new(timeout => 2)->get($url);
		return 1 if $r->{status} == 200;
		die "$what exited early" if waitpid($pid, WNOHANG) == $pid;
		usleep(100_000);
	}
	die "$what did not answer $url within 30 s";
}

my $exporter_port = PostgreSQL::Test::Cluster::get_free_port();
my $exporter = spawn("$tmp/postgres_exporter.log",
	{ DATA_SOURCE_NAME => 'host=' . $node->host . ' port=' . $node->port
		  . ' user=booking_exporter dbname=postgres sslmode=disable' },
	'prometheus-postgres-exporter', "--web.listen-address=127.0.0.1:$exporter_port",
	"--extend.query-path=$root/docker/prometheus/postgres-exporter-queries.yaml", '--disable-settings-metrics');
wait_http("http://127.0.0.1:$exporter_port/metrics", 'the exporter', $exporter);

# Who may read the figures: the exporter's and the dashboards' roles, no one else.
for my $f (qw(metrics_rate_limits metrics_checkout metrics_events))
{
	my ($rc, $o, $e) = $node->psql('postgres', "SET ROLE booking_user; SELECT * FROM booking.$f()");
	like($e, qr/permission denied for function $f/, "booking_user may not call booking.$f()");
	is($node->safe_psql('postgres', "SET ROLE booking_grafana; SELECT count(*) > 0 FROM booking.$f()"), 't',
		"booking_grafana may");
}

# --- promtool check metrics: the adapter's exposition, and the extension's
# figures as the exporter exposes them (the exporter's built-in metrics are
# its own business) ---
sub promtool_metrics
{
	my ($text) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'promtool', 'check', 'metrics' ], '<', \$text, '>', \$out, '2>', \$err);
	return "$out$err";
}
http($a1, 'GET', '/rooms', undef, $token);    # some series with labels
my $problems = promtool_metrics(http($a1, 'GET', '/metrics')->{content});
is($problems, '', 'promtool check metrics: 0 problems in the adapter\'s /metrics') or diag $problems;
my $exported = HTTP::Tiny->new->get("http://127.0.0.1:$exporter_port/metrics")->{content};
my $ours = join '', grep { /^(# (HELP|TYPE) )?pg_booking_/ } split /^/, $exported;
like($ours, qr/^pg_booking_rate_limit_denied_total\{endpoint="login"/m, 'the exporter runs the custom queries');
$problems = promtool_metrics($ours);
is($problems, '', 'promtool check metrics: 0 problems in the extension\'s figures') or diag $problems;

# --- Prometheus, configured as docker/prometheus/prometheus.yml but with
# loopback targets and 1 s intervals ---
my $compose_cfg = YAML::XS::LoadFile("$root/docker/prometheus/prometheus.yml");
my %targets = (pg_booking_adapter => [ map { "127.0.0.1:$_->{port}" } $a1, $a2 ],
	postgres => ["127.0.0.1:$exporter_port"]);
my %jobs = map { $_->{job_name} => 1 } @{ $compose_cfg->{scrape_configs} };
ok($jobs{$_}, "the compose configuration scrapes job $_") for sort keys %targets;
my $prom_port = PostgreSQL::Test::Cluster::get_free_port();
my $cfg = {
	global => { scrape_interval => '1s', evaluation_interval => '1s', scrape_timeout => '1s' },
	rule_files => [ map { "$root/docker/prometheus/$_" } @{ $compose_cfg->{rule_files} } ],
	scrape_configs => [ map { { job_name => $_, static_configs => [ { targets => $targets{$_} } ] } } sort keys %targets ],
};
YAML::XS::DumpFile("$tmp/prometheus.yml", $cfg);
my $prometheus = spawn("$tmp/prometheus.log", 'prometheus', "--config.file=$tmp/prometheus.yml",
	"--storage.tsdb.path=$tmp/prometheus-data", "--web.listen-address=127.0.0.1:$prom_port", '--log.level=warn');
my $prom = "http://127.0.0.1:$prom_port";
wait_http("$prom/-/ready", 'Prometheus', $prometheus);
my $ua = HTTP::Tiny->new(timeout => 10);

sub promql
{
	my ($expr) = @_;
	my $r = $ua->get("$prom/api/v1/query?" . $ua->www_form_urlencode({ query => $expr }));
	my $j = json_of($r->{content});
	return { error => "$r->{status} " . ($j ? $j->{error} // '' : $r->{content}) } unless $j && $j->{status} eq 'success';
	return $j->{data};
}

# Poll (bounded) until $test->() is true.
sub eventually
{
	my ($test, $seconds) = @_;
	my $deadline = time + ($seconds // 30);
	while (time < $deadline)
	{
		return 1 if $test->();
		usleep(250_000);
	}
	return 0;
}

ok(eventually(sub { my $d = promql('sum(up)'); $d->{result} && @{ $d->{result} } && $d->{result}[0]{value}[1] == 3 }),
	'Prometheus scrapes both adapters and the exporter (up == 1 for 3 targets)');

# The alerting rules as Prometheus loaded them from alerts.yml.
my $rules = json_of($ua->get("$prom/api/v1/rules")->{content});
my @alerts = map { @{ $_->{rules} } } @{ $rules->{data}{groups} };
my $in_file = () = slurp_file("$root/docker/prometheus/alerts.yml") =~ /^\s*-\s*alert:/mg;
is(scalar(@alerts), $in_file, "Prometheus loaded every rule of alerts.yml ($in_file)");
is(join(',', map { $_->{health} } grep { $_->{health} ne 'ok' } @alerts), '', 'every rule evaluates without error');

# Negative control: a healthy, idle system fires nothing.
for my $rule (@alerts)
{
	my $d = promql($rule->{query});
	is(scalar(@{ $d->{result} // [ 'error' ] }), 0, "before the traffic, alert $rule->{name} returns nothing")
	  or diag explain $d;
}

# A scrape of every target that started after now.
sub wait_scrape
{
	my $t0 = time;
	return eventually(sub { my $d = promql('min(timestamp(up))'); $d->{result} && @{ $d->{result} } && $d->{result}[0]{value}[1] > $t0 + 0.05 }, 10);
}

# --- traffic ---
my $sum = sub { my $d = promql($_[0]); return $d->{result} && @{ $d->{result} } ? $d->{result}[0]{value}[1] : -1; };
# A series appears at its first increment, which rate() cannot see (it has
# no earlier sample): as in a running system, each kind of answer happens
# once before the rest of the traffic is counted.
my %sent;    # "METHOD route status" => count, as the clients saw it
sub call
{
	my ($a, $method, $path, $route, $body, $tok) = @_;
	my $r = http($a, $method, $path, $body, $tok);
	$sent{"$method $route $r->{status}"}++;
	return $r;
}
my $hour = 0;
sub slot
{
	my $h = shift;
	return { room_id => 0 + $room, title => 'obs', starts_at => sprintf('2031-01-%02dT09:00:00Z', $h),
		ends_at => sprintf('2031-01-%02dT10:00:00Z', $h) };
}
# Successes on both replicas, then clashes with the first booking; logins
# from one address: 3 admitted (wrong password: 401), then 429.
my $login = sub { call($a1, 'POST', '/users/login', '/users/login', { email => 'obs-user@example.com', password => 'wrong password' }) };
for my $round ([ 2, 2, 4, 1 ], [ 4, 2, 2, 4 ])
{
	my ($ok, $clash, $logins, $gets) = @$round;
	for my $i (1 .. $ok) { call($i % 2 ? $a1 : $a2, 'POST', '/bookings', '/bookings', slot(++$hour), $token); }
	for my $i (1 .. $clash) { call($i % 2 ? $a1 : $a2, 'POST', '/bookings', '/bookings', slot(1), $token); }
	$login->() for 1 .. $logins;
	call($a1, 'GET', "/bookings/$_", '/bookings/{id}', undef, $token) for 1 .. $gets;
	ok(wait_scrape(), 'Prometheus scraped this round');
}
is($sent{'POST /bookings 201'}, 6, 'six bookings made');
is($sent{'POST /bookings 409'}, 4, 'four clashes refused');
is($sent{'POST /users/login 429'}, 3, 'three logins refused by the rate limit');

# An event stream held open on the first replica.
my $sse = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $a1->{port}, Timeout => 5) or die "sse: $!";
print $sse "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAuthorization: Bearer $admin\r\n\r\n";
my $first = '';
$sse->recv($first, 4096);
like($first, qr{^HTTP/1\.1 200.*text/event-stream}s, 'an event stream is open');

# Slow requests: a lock on the bookings table holds them for ~2.5 s.  On
# the first replica six wait and succeed (four on a connection, two for
# one: its pool has 4); on the second, whose statement timeout is 300 ms,
# two time out and its breaker opens.
my $locker = fork // die;
if ($locker == 0)
{
	# A child leaves through _exit: the test framework's END blocks (which
	# stop the cluster) belong to the parent.
	$node->psql('postgres', 'BEGIN; LOCK TABLE booking.bookings IN EXCLUSIVE MODE; SELECT pg_sleep(2.5); COMMIT;');
	POSIX::_exit(0);
}
ok(eventually(sub { $node->safe_psql('postgres', q{SELECT count(*) FROM pg_locks WHERE relation = 'booking.bookings'::regclass AND mode = 'ExclusiveLock' AND granted}) == 1 }, 10),
	'the bookings table is locked');
my @slow;
for my $i (1 .. 6)
{
	my $b = slot(++$hour);
	my $pid = fork // die;
	if ($pid == 0)
	{
		local $a1->{http} = HTTP::Tiny->new(timeout => 30);    # not the parent's connection
		my $r = http($a1, 'POST', '/bookings', $b, $token);
		POSIX::_exit($r->{status} == 201 && $r->{ms} > 500 ? 0 : 1);
	}
	push @slow, $pid;
}
my @codes;
for (1 .. 3) { push @codes, call($a2, 'POST', '/bookings', '/bookings', slot(++$hour), $token)->{json}{error_code}; }
my $waiters = 0;
ok(eventually(sub { $waiters = $sum->(qq{pg_booking_db_pool_waiters{instance="127.0.0.1:$a1->{port}"}}); $waiters == 2 }, 10),
	"Prometheus sees two requests waiting for a connection of the first replica (got $waiters)");
ok(wait_scrape(), 'Prometheus scraped the open breaker');
for (1 .. 2) { push @codes, call($a2, 'POST', '/bookings', '/bookings', slot(++$hour), $token)->{json}{error_code}; }
is_deeply(\@codes, [ ('TIMEOUT') x 2, ('CIRCUIT_OPEN') x 3 ], 'two statement timeouts (504), then the circuit is open (503)')
  or diag explain \@codes;
my $slow_ok = 0;
for (@slow) { waitpid($_, 0); $slow_ok++ if $? == 0; }
waitpid($locker, 0);
is($slow_ok, 6, 'six bookings waited over 500 ms for the lock, then succeeded');
$sent{'POST /bookings 201'} += $slow_ok;
diag 'sent: ' . join(', ', map { "$_ × $sent{$_}" } sort keys %sent);

# A checkout run that finished 27 h ago, and none since.
$node->safe_psql('postgres', q{INSERT INTO booking.checkout_runs (business_date, source, started_at, finished_at)
	VALUES (current_date - 3, 'manual', now() - interval '27 hours', now() - interval '27 hours')});

# Wait until Prometheus has scraped all of it.
ok(eventually(sub {
	$sum->('sum(pg_booking_http_requests_total{method="POST",route="/bookings",status="201"})') == $sent{'POST /bookings 201'}
	  && $sum->('sum(pg_booking_rate_limit_denied_total{endpoint="login"})') == 3
	  && $sum->('min(time() - pg_booking_checkout_last_success_timestamp_seconds)') > 26 * 3600
	  && $sum->('sum(pg_booking_sse_clients)') == 1 }),
	'Prometheus has scraped the traffic');
# The events outbox: the test database has no publisher worker (it serves
# pg_booking.checkout_database), so every booking's event is still queued;
# publishing them empties the backlog.
is($sum->('max(pg_booking_events_backlog)'), $sent{'POST /bookings 201'}, 'events backlog = one queued event per booking made');
cmp_ok($sum->('max(pg_booking_events_oldest_unpublished_age_seconds)'), '>', 0, '... the oldest of them has an age');
$node->safe_psql('postgres', 'SELECT booking.publish_events()');
ok(eventually(sub { $sum->('max(pg_booking_events_backlog)') == 0
	  && $sum->('max(pg_booking_events_last_id)') == $sent{'POST /bookings 201'} }),
	'published: backlog 0, the last id is the last event\'s');

# Exact counts, straight from the counters.
is($sum->('sum(pg_booking_http_errors_total{error_code="BOOKING_CONFLICT"})'), $sent{'POST /bookings 409'},
	'clashes counted by Prometheus = 409s sent');
is($sum->('sum(pg_booking_http_rate_limited_total{route="/users/login"})'), 3, '429s per route = 429s sent');

# The exposition with every kind of series (errors, 429s, an open breaker).
for my $a ($a1, $a2)
{
	$problems = promtool_metrics(http($a, 'GET', '/metrics')->{content});
	is($problems, '', "promtool check metrics after the traffic, replica :$a->{port}: 0 problems") or diag $problems;
}

# --- every panel of every dashboard that reads Prometheus ---
# Grafana's variables, expanded as Grafana would for a 5 min range.
sub expand
{
	my ($e) = @_;
	$e =~ s/\$__rate_interval\b/5m/g;
	$e =~ s/\$__range\b/5m/g;
	$e =~ s/\$__interval\b/5s/g;
	return $e;
}
my $a2_instance = "127.0.0.1:$a2->{port}";
my $a1_instance = "127.0.0.1:$a1->{port}";
my $between = sub { my ($lo, $hi) = @_; return sub { $_[0] >= $lo && $_[0] <= $hi } };
my $positive = sub { $_[0] > 0 };
my $quantiles = {};
# title => refId => [ labels every series has, [ { label => value } a series must match, value check, what ] ... ]
my %expect = (
	'Requests per second by route' => { A => [ [qw(method route)],
		[ { method => 'POST', route => '/bookings' }, $positive, '> 0' ],
		[ { method => 'GET', route => '/bookings/{id}' }, $positive, '> 0 (template, not the ids)' ] ] },
	'Error ratio by error_code' => { A => [ ['error_code'],
		[ { error_code => 'BOOKING_CONFLICT' }, $between->(0.001, 1), 'in (0, 1]' ],
		[ { error_code => 'RATE_LIMIT_EXCEEDED' }, $between->(0.001, 1), 'in (0, 1]' ],
		[ { error_code => 'CIRCUIT_OPEN' }, $between->(0.001, 1), 'in (0, 1]' ] ] },
	'Booking failure ratio' => { A => [ ['route'],
		[ { route => '/bookings' }, $between->(0.05, 0.95), 'between 5 % and 95 %' ] ] },
	'Booking attempts by status' => { A => [ [qw(route status)],
		[ { route => '/bookings', status => '409' }, sub { $_[0] == $sent{'POST /bookings 409'} }, "= the 409s sent ($sent{'POST /bookings 409'})" ],
		[ { route => '/bookings', status => '201' }, sub { $_[0] == $sent{'POST /bookings 201'} }, "= the 201s sent ($sent{'POST /bookings 201'})" ],
		[ { route => '/bookings', status => '503' }, sub { $_[0] == ($sent{'POST /bookings 503'} // 0) }, '= the 503s sent' ] ] },
	'Latency p50 / p95 / p99 by route' => {
		map { my $ref = $_; $ref => [ [qw(method route)],
			[ { method => 'POST', route => '/bookings' }, sub { $quantiles->{$ref} = $_[0]; $_[0] > 0 && $_[0] <= 5 }, 'in (0, 5] s' ] ] } qw(A B C) },
	'Breaker state' => { A => [ [qw(instance upstream state)],
		[ { instance => $a2_instance, upstream => 'primary', state => 'open' }, sub { $_[0] == 1 }, '1 on the second replica' ],
		[ { instance => $a1_instance, upstream => 'primary', state => 'closed' }, sub { $_[0] == 1 }, '1 on the first replica' ] ] },
	'Breaker transitions' => {
		A => [ [qw(upstream from to)], [ { upstream => 'primary', from => 'closed', to => 'open' }, $positive, '> 0' ] ],
		B => [ ['upstream'], [ { upstream => 'primary' }, $positive, '> 0 rejected/s' ] ] },
	'Database pool use' => {
		A => [ [qw(instance upstream)], [ { instance => $a1_instance, upstream => 'primary' }, $between->(0, 1), 'in [0, 1]' ] ],
		B => [ [qw(instance upstream)], [ { instance => $a1_instance, upstream => 'primary' }, $between->(0, 4), 'in [0, pool size]' ] ],
		C => [ ['upstream'], [ { upstream => 'primary' }, $between->(0.5, 5), 'in [0.5, 5] s (two waited for the lock holders)' ] ] },
	'Rate-limit denials' => {
		A => [ ['endpoint'], [ { endpoint => 'login' }, $positive, '> 0' ] ],
		B => [ [qw(method route)], [ { method => 'POST', route => '/users/login' }, $positive, '> 0' ] ],
		C => [ ['endpoint'], [ { endpoint => 'login' }, $between->(1e-9, 1), 'in (0, 1]' ] ] },
	'Checkout last run' => {
		A => [ [], [ {}, $between->(26 * 3600, 28 * 3600), 'about 27 h' ] ],
		B => [ [], [ {}, sub { $_[0] >= 0 }, '>= 0' ] ],
		C => [ [], [ {}, sub { $_[0] == 0 }, '0 (the run succeeded)' ] ] },
	'In flight, event streams, events backlog' => {
		A => [ ['instance'], [ { instance => $a1_instance }, sub { $_[0] >= 1 }, '>= 1 (the stream, the scrape)' ] ],
		B => [ ['instance'], [ { instance => $a1_instance }, sub { $_[0] == 1 }, '1 stream' ],
			[ { instance => $a2_instance }, sub { $_[0] == 0 }, 'no stream' ] ],
		C => [ [], [ {}, sub { $_[0] == 0 }, '0' ] ] },
	'Build' => { A => [ ['version'], [ { version => qr/^\d+\.\d+/ }, sub { $_[0] == 2 }, '2 replicas' ] ] },
);

sub matches
{
	my ($metric, $want) = @_;
	for my $k (keys %$want)
	{
		my $v = $metric->{$k} // return 0;
		return 0 unless ref $want->{$k} ? $v =~ $want->{$k} : $v eq $want->{$k};
	}
	return 1;
}

my ($panels, $exprs) = (0, 0);
for my $file (glob("$root/grafana/dashboards/*.json"))
{
	my $dash = decode_json(slurp_file($file));
	for my $panel (grep { ($_->{datasource}{type} // '') eq 'prometheus' } @{ $dash->{panels} })
	{
		my $title = $panel->{title};
		$panels++;
		ok($expect{$title}, "panel \"$title\" has expectations in this test") or next;
		for my $t (@{ $panel->{targets} })
		{
			my $want = $expect{$title}{ $t->{refId} };
			ok($want, "\"$title\" $t->{refId} has expectations") or next;
			my $expr = expand($t->{expr});
			unlike($expr, qr/\$/, "\"$title\" $t->{refId}: no unexpanded variable");
			$exprs++;
			my $d = promql($expr);
			my @series = @{ $d->{result} // [] };
			ok(@series > 0, "\"$title\" $t->{refId} returns series ($expr)") or do { diag explain $d; next; };
			my ($labels, @checks) = @$want;
			my @wrong = grep { join(',', sort grep { $_ ne '__name__' } keys %{ $_->{metric} }) ne join(',', sort @$labels) } @series;
			is(scalar(@wrong), 0, "\"$title\" $t->{refId}: every series is labelled by (@$labels)")
			  or diag explain $wrong[0]{metric};
			for my $c (@checks)
			{
				my ($match, $check, $what) = @$c;
				my ($s) = grep { matches($_->{metric}, $match) } @series;
				my $desc = join(',', map { "$_=$match->{$_}" } sort keys %$match);
				ok($s && $check->($s->{value}[1]), "\"$title\" $t->{refId} {$desc}: $what (got " . ($s ? $s->{value}[1] : 'no such series') . ')');
			}
		}
	}
}
ok($quantiles->{A} <= $quantiles->{B} && $quantiles->{B} <= $quantiles->{C},
	"POST /bookings: p50 <= p95 <= p99 ($quantiles->{A}, $quantiles->{B}, $quantiles->{C})");
cmp_ok($quantiles->{C}, '>', 0.5, 'POST /bookings: p99 over 500 ms (the locked requests)');

# --- every alert ---
my %alert_expect = (
	PgBookingBreakerOpen => [ { instance => $a2_instance, upstream => 'primary' }, sub { $_[0] == 1 }, '1' ],
	PgBookingHighErrorRatio => [ {}, sub { $_[0] > 0.05 && $_[0] < 1 }, 'over 5 %' ],
	PgBookingCheckoutNotRun => [ {}, $between->(26 * 3600, 28 * 3600), 'about 27 h' ],
	PgBookingSlowRoute => [ { method => 'POST', route => '/bookings' }, sub { $_[0] > 0.5 }, 'over 0.5 s' ],
);
for my $rule (@alerts)
{
	my $want = $alert_expect{ $rule->{name} };
	ok($want, "alert $rule->{name} has expectations in this test") or next;
	$exprs++;
	my @series = @{ promql($rule->{query})->{result} // [] };
	my ($match, $check, $what) = @$want;
	my ($s) = grep { matches($_->{metric}, $match) } @series;
	ok($s && $check->($s->{value}[1]), "alert $rule->{name} fires: $what (got " . ($s ? $s->{value}[1] : 'nothing') . ')')
	  or diag explain \@series;
}
# Prometheus's own rule evaluation sees them too (pending until their "for").
ok(eventually(sub {
	my $a = json_of($ua->get("$prom/api/v1/alerts")->{content});
	my %state = map { $_->{labels}{alertname} => $_->{state} } @{ $a->{data}{alerts} // [] };
	return 4 == grep { $state{$_} } keys %alert_expect;
}, 20), 'Prometheus evaluates all four alerts as pending or firing');
diag "PromQL expressions checked against Prometheus: $exprs ($panels panels and " . scalar(@alerts) . ' alerts)';

close $sse;
for my $pid ($prometheus, $exporter)
{
	kill 'TERM', $pid;
	waitpid($pid, 0);
}
@children = ();
is(stop_adapter($a1), 0, 'adapter 1 stops cleanly');
is(stop_adapter($a2), 0, 'adapter 2 stops cleanly');
$node->stop;
done_testing();
