# Grafana: no Docker engine runs here, so this test checks what Grafana
# would do with our provisioning.  It parses every dashboard JSON of
# grafana/dashboards, and runs each panel's SQL (Grafana's time macros
# expanded) against a real database as booking_grafana, the read-only role
# of the provisioned data source, checking the columns the panel expects.
#
# A panel that reads a relation the install script does not create fails.
# The panels of the "Hotel revenue" dashboard run over the demo data
# (scripts/demo.sql, in a database of its own) and must all return rows.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = $ENV{TESTDIR} // '.';

# The columns each panel needs: name => type class ('num', 'text', 'time'),
# or '*' for a table panel that shows whatever the relation has.  A panel
# missing here fails: a new panel must say what it expects.
my %expect = (
	'Bookings by status' => [ total => 'num', confirmed => 'num', cancelled => 'num', completed => 'num' ],
	'Bookings per room' => [ room_name => 'text', confirmed => 'num', cancelled => 'num', completed => 'num' ],
	'Average rating per room' => [ room_name => 'text', average_rating => 'num', review_count => 'num' ],
	'Bookings per day' => [ time => 'time', confirmed => 'num', cancelled => 'num', completed => 'num' ],
	'Hotel occupancy (rooms held per night)' => [ time => 'time', metric => 'text', held => 'num' ],
	'Rate-limit denials' => [ endpoint => 'text', max_requests => 'num', denials => 'num', admitted => 'num' ],
	'Checkout job runs' => [ business_date => 'date', started_at => 'time', completed_stays => 'num', error => 'text' ],
	'Occupancy % per night' => [ time => 'time', metric => 'text', occupancy_pct => 'num' ],
	'ADR per night' => [ time => 'time', metric => 'text', adr => 'num' ],
	'RevPAR per night' => [ time => 'time', metric => 'text', revpar => 'num' ],
	'Room revenue per night' => [ time => 'time', metric => 'text', room_revenue => 'num' ],
	'Room revenue by room type' => [ room_type => 'text', room_revenue => 'num', rooms_sold => 'num' ],
	'Pickup (rooms on the books N days before the night)' => [ time => 'time', metric => 'text', rooms_on_books => 'num' ],
	'Booking lead time' => [ lead_time_days => 'text', kept => 'num', cancelled => 'num' ],
	'Cancellation rate, no-show rate, ALOS' => [ hotel_name => 'text', reservations => 'num',
		cancellation_rate_pct => 'num', no_show_rate_pct => 'num', alos => 'num', cancellation_fees => 'num' ],
);
# The dashboard whose every panel must have rows over the demo data.
my $demo_dashboard = 'pg-booking-hotel-revenue';
# Panels that must return rows on the fixture below.
my %must_have_rows = map { $_ => 1 }
  ('Bookings by status', 'Bookings per room', 'Average rating per room', 'Bookings per day');

my $node = PostgreSQL::Test::Cluster->new('grafana');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
timezone = 'UTC'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_booking CASCADE;
ALTER ROLE booking_grafana LOGIN;
INSERT INTO booking.rooms (name, location, capacity) VALUES ('Alpha', 'HQ', 4), ('Beta', 'HQ', 8);
INSERT INTO booking.users (email, full_name, password_hash)
SELECT 'user' || i || '@example.com', 'User ' || i, 'x' FROM generate_series(1, 3) i;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
SELECT 1 + i % 2, 1 + i % 3, 'fixture', now() - make_interval(days => 10 - i), now() - make_interval(days => 10 - i) + interval '1 hour',
       (ARRAY['confirmed', 'cancelled', 'completed'])[1 + i % 3]
  FROM generate_series(0, 19) i;
INSERT INTO booking.reviews (room_id, user_id, rating) VALUES (1, 1, 4), (1, 2, 5), (2, 3, 2);
CREATE DATABASE demo;
});
$node->safe_psql('demo', 'CREATE EXTENSION pg_booking CASCADE');
$node->safe_psql('demo', slurp_file("$root/scripts/demo.sql"));

# The data source the dashboards use is the provisioned one, as booking_grafana.
my $datasources = slurp_file("$root/grafana/provisioning/datasources/pg_booking.yaml");
my ($ds_uid) = $datasources =~ /^\s*uid:\s*(\S+)/m;
like($datasources, qr/^\s*user:\s*booking_grafana\s*$/m, 'the data source signs in as booking_grafana');
like($datasources, qr/^\s*type:\s*postgres\s*$/m, 'the data source is PostgreSQL');
like(slurp_file("$root/grafana/provisioning/dashboards/pg_booking.yaml"), qr{path:\s*/var/lib/grafana/dashboards},
	'dashboards are provisioned from the mounted folder');

# (and the functions a panel may call on them, booking.stay_rates_json).
my @relations = split /\n/, $node->safe_psql('postgres',
	"SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'booking'
	 UNION SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'booking'::regnamespace");
my %exists = map { $_ => 1 } @relations;

# Grafana's PostgreSQL macros, expanded as Grafana does (quoted RFC 3339).
my ($from, $to) = ("'2000-01-01T00:00:00Z'", "'2100-01-01T00:00:00Z'");
sub expand_macros
{
	my ($sql) = @_;
	$sql =~ s/\$__timeFilter\(([^)]+)\)/$1 BETWEEN $from AND $to/g;
	$sql =~ s/\$__timeFrom\(\)/$from/g;
	$sql =~ s/\$__timeTo\(\)/$to/g;
	return $sql;
}

sub type_class
{
	my ($type) = @_;
	return 'time' if $type =~ /^timestamp/;
	return 'num' if $type =~ /^(bigint|integer|smallint|numeric|real|double precision)/;
	return 'text' if $type =~ /^(text|character varying|name)/;
	return $type;
}

my @dashboards = glob("$root/grafana/dashboards/*.json");
ok(scalar(@dashboards) > 0, 'there are dashboards');
my $view = 0;
my $demo_panels = 0;
for my $file (@dashboards)
{
	my $dash = eval { decode_json(slurp_file($file)) };
	ok($dash, "$file parses as JSON") or do { diag $@; next; };
	ok($dash->{uid} && $dash->{title}, "$file has a uid and a title");
	like($dash->{refresh} // '', qr/^\d+[smh]$/, "$dash->{title} refreshes itself");
	my $on_demo = ($dash->{uid} // '') eq $demo_dashboard;
	my $db = $on_demo ? 'demo' : 'postgres';

	for my $panel (@{ $dash->{panels} })
	{
		my $title = $panel->{title};
		# Prometheus and Loki panels are checked against a real Prometheus
		# (adapter/t/046_prometheus.pl) and structurally
		# (adapter/t/041_observability_files.pl); the SQL ones here.
		my $ds = $panel->{datasource}{uid} // '';
		ok($ds eq $ds_uid || $ds eq 'prometheus' || $ds eq 'loki', "\"$title\" reads a provisioned data source");
		next unless $ds eq $ds_uid;
		my $want = $expect{$title};
		ok(defined $want, "panel \"$title\" declares its columns in this test") or next;
		is($panel->{datasource}{uid}, $ds_uid, "\"$title\" reads the provisioned data source");
		for my $target (@{ $panel->{targets} })
		{
			my $sql = $target->{rawSql};
			ok($sql, "\"$title\" has SQL") or next;
			my @missing = grep { !$exists{$_} } ($sql =~ /\bbooking\.(\w+)/g);
			{
				is("@missing", '', "\"$title\" reads only relations (and functions) the extension creates") or next;
				$sql = expand_macros($sql);
				unlike($sql, qr/\$/, "\"$title\": no unexpanded macro or variable");
				$view++;
				my ($ok, $out, $err) = (0, '', '');
				my $rc = $node->psql($db, qq{
CREATE TEMP VIEW panel_$view AS $sql;
SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)
  FROM pg_attribute WHERE attrelid = 'panel_$view'::regclass AND attnum > 0;
SELECT count(*) FROM panel_$view;
}, extra_params => [ '-U', 'booking_grafana', '-v', 'ON_ERROR_STOP=1' ], stdout => \$out, stderr => \$err);
				is($rc, 0, "\"$title\" runs as booking_grafana") or do { diag $err; next; };
				my ($columns, $rows) = split /\n/, $out;
				my %got = map { my ($n, $t) = split /:/, $_, 2; ($n => type_class($t)) } split /,/, $columns;
				if (ref $want)
				{
					my @pairs = @$want;
					my @wrong;
					while (my ($name, $class) = splice(@pairs, 0, 2))
					{
						push @wrong, "$name (want $class, got " . ($got{$name} // 'none') . ')'
						  unless ($got{$name} // '') eq $class;
					}
					is("@wrong", '', "\"$title\" returns the columns it plots: $columns");
				}
				else
				{
					ok(scalar(keys %got) > 0, "\"$title\" returns columns: $columns");
				}
				if ($must_have_rows{$title})
				{
					cmp_ok($rows, '>', 0, "\"$title\" has rows on the fixture ($rows)");
				}
				if ($on_demo)
				{
					$demo_panels++;
					cmp_ok($rows, '>', 0, "\"$title\" has rows over the demo data ($rows)");
				}
			}
		}
	}
}

cmp_ok($demo_panels, '>=', 8, "the Hotel revenue dashboard's panels ran over the demo data ($demo_panels)");

# The role is read-only and reads nothing but the views.
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM booking.bookings',
	extra_params => [ '-U', 'booking_grafana' ]);
like($err, qr/permission denied/, 'booking_grafana cannot read the bookings table');
($rc, $out, $err) = $node->psql('postgres', 'CREATE TABLE booking.x (i int)',
	extra_params => [ '-U', 'booking_grafana' ]);
like($err, qr/permission denied/, 'booking_grafana cannot create anything in the schema');

$node->stop;
done_testing();
