# The demo data of make run (scripts/demo.sql) exercises every feature: it
# loads once (a second load adds nothing), every first GET a newcomer makes
# answers with data, and every Grafana panel has rows.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

my $root = "$ENV{TESTDIR}/..";
my $node = setup_node();
$node->safe_psql('postgres', 'ALTER ROLE booking_grafana LOGIN');
my $counts = q{SELECT (SELECT count(*) FROM booking.bookings) || ' ' || (SELECT count(*) FROM booking.reservations)
  || ' ' || (SELECT count(*) FROM booking.reviews) || ' ' || (SELECT count(*) FROM booking.hotels)
  || ' ' || (SELECT count(*) FROM booking.checkout_runs) || ' ' || (SELECT count(*) FROM booking.users)};
my ($rc, $out, $err) = $node->psql('postgres', slurp_file("$root/scripts/demo.sql"), extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
is($rc, 0, 'demo.sql loads') or diag $err;
my $first = $node->safe_psql('postgres', $counts);
($rc, $out, $err) = $node->psql('postgres', slurp_file("$root/scripts/demo.sql"), extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
is_deeply([ $rc, $node->safe_psql('postgres', $counts) ], [ 0, $first ], 'a second load adds nothing');

my $kinds = sub { join ',', split /\n/, $node->safe_psql('postgres', shift) };
is($kinds->(q{SELECT DISTINCT status FROM booking.bookings ORDER BY 1}), 'cancelled,completed,confirmed',
	'bookings: past (completed), future (confirmed), cancelled');
cmp_ok($node->safe_psql('postgres', q{SELECT count(DISTINCT series_id) FROM booking.bookings WHERE series_id IS NOT NULL}), '>=', 2,
	'recurring series');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM booking.bookings b JOIN booking.rooms r ON r.id = b.room_id
  WHERE r.buffer_before_minutes > 0 AND b.status = 'confirmed'}), '>', 0, 'bookings of rooms with buffers');
is($kinds->(q{SELECT DISTINCT status FROM booking.reservations ORDER BY 1}), 'cancelled,checked_in,completed,confirmed,no_show',
	'reservations in every status');
is($kinds->(q{SELECT DISTINCT status FROM booking.reviews ORDER BY 1}), 'flagged,visible', 'reviews, one flagged');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM booking.review_votes}), '>', 0, 'votes on reviews');
is($node->safe_psql('postgres', q{SELECT count(DISTINCT hotel_id) || ' ' || (max(night) - min(night) >= 90)::text FROM booking.inventory}),
	'2 true', 'two hotels with 90 days of inventory');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM booking.checkout_runs WHERE finished_at IS NOT NULL}), '>', 0,
	'a checkout history');
cmp_ok($node->safe_psql('postgres', q{SELECT count(DISTINCT kind) FROM booking.events}), '>=', 3, 'events of several kinds');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM booking.user_availability}), '>', 0, "people's availability");

# Every Grafana panel has rows (its SQL as booking_grafana, Grafana's macros over a wide range).
for my $file (glob("$root/grafana/dashboards/*.json"))
{
	my $dash = decode_json(slurp_file($file));
	for my $panel (@{ $dash->{panels} })
	{
		for my $t (@{ $panel->{targets} })
		{
			my $sql = $t->{rawSql} or next;
			$sql =~ s/\$__timeFilter\(([^)]+)\)/$1 BETWEEN now() - interval '1 year' AND now() + interval '1 year'/g;
			$sql =~ s/\$__timeFrom\(\)/(now() - interval '1 year')/g;
			$sql =~ s/\$__timeTo\(\)/(now() + interval '1 year')/g;
			my ($prc, $rows, $perr) = $node->psql('postgres', "SELECT count(*) FROM ($sql) p",
				extra_params => [ '-U', 'booking_grafana' ]);
			cmp_ok($rows || 0, '>', 0, "Grafana panel \"$panel->{title}\" has rows") or diag $perr;
		}
	}
}

# A newcomer's first GETs, as the demo users.
my $a = start_adapter($node);
my %tok = map { my $r = http($a, 'POST', '/users/login', { email => "$_\@demo.pg-booking.test", password => "$_-demo-pw" });
	($_ => $r->{json}{access_token}) } qw(user admin moderator service_account);
my $boardroom = $node->safe_psql('postgres', q{SELECT id FROM booking.rooms WHERE name = 'Boardroom'});
my $hotel = $node->safe_psql('postgres', q{SELECT id FROM booking.hotels WHERE name = 'Grand Lisbon'});
for my $get ([ user => '/rooms' ], [ user => '/bookings' ], [ user => '/hotels' ], [ user => "/inventory/$hotel" ],
	[ user => '/reservations' ], [ user => "/rooms/$boardroom/reviews" ], [ moderator => '/moderation/reviews' ],
	[ admin => '/bookings' ], [ admin => '/reservations' ], [ admin => '/admin/jobs' ],
	[ admin => '/admin/analytics/bookings/by-room' ], [ admin => '/admin/analytics/reviews/average-rating-by-room' ],
	[ admin => '/admin/analytics/rate-limits' ], [ service_account => '/events' ])
{
	my ($who, $path) = @$get;
	my $r = http($a, 'GET', $path, undef, $tok{$who});
	ok($r->{status} == 200 && ref $r->{json} eq 'ARRAY' && @{ $r->{json} } > 0, "GET $path as $who: data") or diag $r->{content};
}
my $s = http($a, 'GET', '/admin/analytics/bookings/summary', undef, $tok{admin})->{json};
ok($s->{total} > 0 && $s->{cancelled} > 0 && $s->{completed} > 0, 'bookings summary: every status counted');
stop_adapter($a);
done_testing();
