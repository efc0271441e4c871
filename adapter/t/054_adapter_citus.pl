# The adapter in front of a Citus coordinator (issue 16): sign-in, a
# booking, reading it back, someone else's answering 404 and a clash 409,
# all through the coordinator with two workers, the row-level security
# policies applied on the workers' shards with the caller's claims.  The
# adapter wraps each call in BEGIN/COMMIT in a Citus database
# (adapter/db.c): Citus passes the claims on to the workers only inside a
# transaction block.  Shown without it: the same read as an implicit
# transaction sees nothing.  Skipped, with the reason, without Citus.
use strict;
use warnings;
use lib 't';
use FindBin;
use lib "$FindBin::Bin/../../t";
use AdapterTest;
use PgBookingTest qw(citus_missing citus_cluster);
use PostgreSQL::Test::Utils;
use Test::More;

if (my $why = citus_missing())
{
	plan skip_all => $why;
}

my ($coord, @workers) = citus_cluster('adapter_');
$coord->safe_psql('postgres', q{
UPDATE booking.rate_limits SET max_requests = 1000;
INSERT INTO booking.rooms (name, location, capacity) SELECT 'R' || i, 'HQ', 4 FROM generate_series(1, 4) i;
});
my %id = map { $_ => make_user($coord, "$_\@example.com", 'user') } qw(ann bob);
$id{$_} = make_user($coord, "$_\@example.com", $_) for qw(admin auditor);
$coord->safe_psql('postgres', 'SELECT count(*) FROM booking.distribute()');
is($coord->safe_psql('postgres',
	"SELECT count(DISTINCT nodeport) FROM pg_dist_shard s JOIN pg_dist_shard_placement p USING (shardid)
	  WHERE s.logicalrelid = 'booking.bookings'::regclass"), '2', 'the bookings are sharded over both workers');

my $a = start_adapter($coord);
my %tok = map { $_ => token_for($a, "$_\@example.com", 'user') } qw(ann bob);
$tok{$_} = token_for($a, "$_\@example.com", $_) for qw(admin auditor);
ok($tok{ann} && $tok{bob}, 'both sign in through the coordinator');
my $r = http($a, 'POST', '/bookings',
	{ room_id => 2, title => 'ann', starts_at => '2031-03-01T10:00:00Z', ends_at => '2031-03-01T11:00:00Z' }, $tok{ann});
is($r->{status}, 201, 'POST /bookings: 201') or diag $r->{content};
my $booking = $r->{json}{id};
is($coord->safe_psql('postgres', "SELECT user_id FROM booking.bookings WHERE id = $booking AND room_id = 2"), $id{ann},
	"... in ann's name, on the room's shard");
for my $round (1 .. 3)
{
	$r = http($a, 'GET', "/bookings/$booking", undef, $tok{ann});
	is("$r->{status} " . ($r->{json}{id} // ''), "200 $booking", "GET /bookings/{id} by its owner: 200 (round $round)");
	$r = http($a, 'GET', "/bookings/$booking", undef, $tok{bob});
	is("$r->{status} " . ($r->{json}{error_code} // ''), '404 NOT_FOUND', "... by someone else: 404 (round $round)");
	$r = http($a, 'POST', '/bookings',
		{ room_id => 2, title => 'bob', starts_at => '2031-03-01T10:30:00Z', ends_at => '2031-03-01T11:30:00Z' }, $tok{bob});
	is("$r->{status} " . ($r->{json}{error_code} // ''), '409 BOOKING_CONFLICT', "a clash: 409 (round $round; the pooled connection is reused after it)");
}
$r = http($a, 'GET', '/bookings', undef, $tok{ann});
is(join(',', map { $_->{id} } @{ $r->{json} // [] }), $booking, "GET /bookings: ann's own booking, and only that");
# A series: each occurrence checked on the room's shard (docs/citus.md, finding 7).
$r = http($a, 'POST', '/bookings', { room_id => 3, title => 'weekly', starts_at => '2031-04-01T10:00:00Z',
	ends_at => '2031-04-01T11:00:00Z', recurrence => { frequency => 'weekly', count => 3 } }, $tok{ann});
is("$r->{status} " . scalar(@{ $r->{json}{bookings} // [] }), '201 3', 'a weekly series of 3 through the coordinator: 201')
  or diag $r->{content};
$r = http($a, 'POST', '/bookings', { room_id => 3, title => 'clash', starts_at => '2031-04-08T10:30:00Z',
	ends_at => '2031-04-08T11:30:00Z', recurrence => { frequency => 'daily', count => 2 } }, $tok{bob});
is("$r->{status} " . ($r->{json}{error_code} // '') . ' ' . scalar(@{ $r->{json}{details}{conflicting_occurrences} // [] }),
	'409 BOOKING_CONFLICT 1', "a series clashing once with it: 409 naming the one occurrence, though bob cannot see ann's booking");
$r = http($a, 'GET', '/bookings', undef, $tok{bob});
is(scalar @{ $r->{json} // [] }, 0, 'bob lists none');

# Calendar feeds (issue 14) through the coordinator: the room's and one's own.
$r = http($a, 'GET', '/rooms/2/calendar.ics?from=2031-01-01T00:00:00Z&to=2031-12-31T00:00:00Z', undef, $tok{bob});
like("$r->{status} $r->{content}", qr/^200 BEGIN:VCALENDAR.*BEGIN:VEVENT.*SUMMARY:Busy.*END:VCALENDAR/s,
	"GET /rooms/{id}/calendar.ics: the room's booking, its title hidden from bob") or diag $r->{content};
$r = http($a, 'GET', '/users/me/calendar.ics?from=2031-01-01T00:00:00Z&to=2031-12-31T00:00:00Z', undef, $tok{ann});
my $ics = $r->{content} // '';
is(scalar(() = $ics =~ /BEGIN:VEVENT/g) . ' ' . scalar(() = $ics =~ /^RDATE/mg), '2 2',
	"GET /users/me/calendar.ics: ann's booking and her weekly series of 3 (one VEVENT, two RDATEs)") or diag $ics;

# The secret feed (a reference table of token hashes): no bearer token.
$r = http($a, 'POST', '/users/me/calendar-token', undef, $tok{ann});
is($r->{status}, 201, 'POST /users/me/calendar-token through the coordinator: 201') or diag $r->{content};
my $feed = $r->{json}{path} // '/none';
$r = http($a, 'GET', "$feed?from=2031-01-01T00:00:00Z&to=2031-12-31T00:00:00Z");
is("$r->{status} " . scalar(() = ($r->{content} // '') =~ /BEGIN:VEVENT/g), '200 2', "... and the feed at its path answers ann's calendar");

# The analytics answers read views over tables staff may not read; on
# Citus the shards are queried as the caller, so they run as their owner
# (docs/citus.md, finding 21).
for my $who (qw(admin auditor))
{
	$r = http($a, 'GET', '/admin/analytics/bookings/by-room', undef, $tok{$who});
	is("$r->{status} " . join(',', map { "$_->{room_id}:$_->{total}" } @{ $r->{json} // [] }), '200 1:0,2:1,3:3,4:0',
		"GET /admin/analytics/bookings/by-room as $who: 200, the counters of every shard") or diag $r->{content};
}
$r = http($a, 'GET', '/admin/analytics/bookings/by-room', undef, $tok{ann});
is($r->{status}, 403, '... and 403 for a user');

# Without the transaction block: the same read as one implicit transaction
# (what the adapter sends on a single node) gets no claims on the workers.
my $implicit = $coord->safe_psql('postgres', qq{SET ROLE booking_user;
SELECT set_config('request.jwt.claims', '{"sub": "$id{ann}", "role": "booking_user"}', true) IS NULL,
       (SELECT count(*) FROM booking.bookings)});
is((split /\n/, $implicit)[-1], 'f|0', 'the same read as an implicit transaction sees nothing: the BEGIN is what makes it work');

stop_adapter($a);
$_->stop for ($coord, @workers);
done_testing();
