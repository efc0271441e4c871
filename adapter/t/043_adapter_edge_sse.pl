# Event streams bound to their token (issue 9, item 7): a GET /events
# stream ends with a last "end" event saying why when its token expires,
# when it reaches ADAPTER_SSE_MAX_SECONDS, and when its caller is
# deactivated or demoted (api.me() refuses the stream's claims, asked again
# every keepalive).
use strict;
use warnings;
use lib 't';
use AdapterTest;
use IO::Select;
use IO::Socket::INET;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $MAX = 8;
my $node = setup_node();
my %id = map { $_ => make_user($node, "$_\@example.com", 'admin') } qw(expiring lifetime deactivated demoted);

# Sessions that end are the SQL's rule (api.me() refuses a token whose user is
# inactive or no longer holds its role).  Where that rule has not landed yet,
# a stand-in with the same contract lets this test check the adapter's part.
my $me_checks = $node->safe_psql('postgres', q{
UPDATE booking.users SET active = false WHERE email = 'deactivated@example.com';
SELECT set_config('request.jwt.claims', json_build_object('sub', id::text, 'role', 'booking_admin')::text, false)
  FROM booking.users WHERE email = 'deactivated@example.com';
DO $$ BEGIN PERFORM api.me(); RAISE NOTICE 'me-accepts'; EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'me-refuses'; END $$;
UPDATE booking.users SET active = true WHERE email = 'deactivated@example.com';}, stderr => \my $notice);
if (($notice // '') !~ /me-refuses/)
{
	diag('api.me() accepts a deactivated user here: using a stand-in that refuses inactive or demoted callers');
	$node->safe_psql('postgres', q{
ALTER FUNCTION api.me() RENAME TO me_before_sessions;
CREATE FUNCTION api.me() RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM booking.users u WHERE u.id = (booking.claims() ->> 'sub')::bigint AND u.active
                     AND 'booking_' || u.role = booking.claims() ->> 'role') THEN
        PERFORM booking.raise_error(401, 'UNAUTHORIZED', 'the session has ended');
    END IF;
    RETURN api.me_before_sessions();
END $$;
GRANT EXECUTE ON FUNCTION api.me() TO booking_api;
COMMENT ON FUNCTION api.me IS 'GET /users/me (self)';});
}

my $ad = start_adapter($node, env => { ADAPTER_CLIENT_TIMEOUT_S => 2, ADAPTER_SSE_MAX_SECONDS => $MAX });
my $now = time;
my %exp = (expiring => $now + 3, lifetime => $now + 3600, deactivated => $now + 3600, demoted => $now + 3600);

sub open_stream
{
	my ($who) = @_;
	my $token = mint_jwt({ sub => "$id{$who}", role => 'booking_admin', exp => int($exp{$who}) });
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ad->{port}, Timeout => 5) or die $!;
	syswrite($s, "GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer $token\r\n\r\n");
	$s->blocking(0);
	return { who => $who, sock => $s, opened => time, raw => '' };
}
my @streams = map { open_stream($_) } sort keys %exp;
usleep(1_500_000);
$node->safe_psql('postgres', qq{
UPDATE booking.users SET active = false WHERE id = $id{deactivated};
UPDATE booking.users SET role = 'user' WHERE id = $id{demoted};});

my $deadline = time + $MAX + 8;
while (time < $deadline && grep { !defined $_->{closed} } @streams)
{
	my @open = grep { !defined $_->{closed} } @streams;
	my @ready = IO::Select->new(map { $_->{sock} } @open)->can_read(0.5);
	for my $st (@open)
	{
		next unless grep { $_ == $st->{sock} } @ready;
		my $n = sysread($st->{sock}, my $buf, 65536);
		if ($n) { $st->{raw} .= $buf; }
		elsif (defined $n) { $st->{closed} = time - $st->{opened}; }
	}
}

# The SSE text of a chunked reply.
sub sse_text
{
	my ($raw) = @_;
	my ($head, $body) = split /\r\n\r\n/, $raw, 2;
	my $text = '';
	$body //= '';
	while ($body =~ s/\A([0-9a-fA-F]+)\r\n//)
	{
		my $n = hex $1;
		last if $n == 0;
		$text .= substr($body, 0, $n, '');
		$body =~ s/\A\r\n//;
	}
	return ($head, $text);
}

my %want = (expiring => 'token_expired', lifetime => 'max_lifetime', deactivated => 'unauthorized',
	demoted => 'unauthorized');
for my $st (@streams)
{
	my ($head, $text) = sse_text($st->{raw});
	like($head // '', qr{^HTTP/1\.1 200}, "$st->{who}: the stream opened");
	my ($end) = $text =~ /^event: end\ndata: (.*)$/m;
	my $e = json_of($end // '') // {};
	ok(defined $st->{closed} && ($e->{reason} // '') eq $want{ $st->{who} } && length($e->{message} // ''),
		sprintf('%s: the stream ended (%s: %s) after %.1f s', $st->{who}, $e->{reason} // 'no end event',
			$e->{message} // '', $st->{closed} // -1))
	  or diag($text);
	like($text, qr/event: end\ndata: [^\n]*\n\n\z/, "$st->{who}: the end event is the last thing sent");
}
my ($lifetime) = grep { $_->{who} eq 'lifetime' } @streams;
cmp_ok($lifetime->{closed} // 99, '>=', $MAX - 1, "the lifetime stream lasted its $MAX s");

is(stop_adapter($ad), 0, 'adapter stops cleanly');
done_testing();
