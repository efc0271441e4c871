# The envelope everywhere (issue 9, items 8 and 9): requests libmicrohttpd
# refuses itself, heads past our limits, NUL bytes and list parameters.
# Every reply is one HTTP response (one header block) whose body is the
# JSON envelope with the right status; nothing is reshaped into a success.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = setup_node();
my $a = start_adapter($node);
my $uid = make_user($node, 'u@example.com', 'user');
my $user = token_for($a, 'u@example.com', 'user');

# One test function taking every kind of argument the adapter knows.
$node->safe_psql('postgres', q{
CREATE FUNCTION api.edge_types(i integer DEFAULT NULL, n numeric DEFAULT NULL, b boolean DEFAULT NULL,
    t text DEFAULT NULL, j jsonb DEFAULT NULL, ta text[] DEFAULT NULL, ia bigint[] DEFAULT NULL,
    d date DEFAULT NULL, u uuid DEFAULT NULL) RETURNS jsonb LANGUAGE sql STABLE
AS $$ SELECT jsonb_build_object('i', i, 'n', n, 'b', b, 't', t, 'j', j, 'ta', ta, 'ia', ia, 'd', d, 'u', u) $$;
GRANT EXECUTE ON FUNCTION api.edge_types TO booking_api;
COMMENT ON FUNCTION api.edge_types IS 'test only';});
# The adapter reads its catalog again on a miss, at most once a second.
for (1 .. 30) { last if http($a, 'POST', '/rpc/edge_types', {}, $user)->{status} == 200; usleep(100_000); }

# Is this one well-formed reply carrying the envelope with this status?
sub one_envelope
{
	my ($bytes, $status, $what) = @_;
	my @r = parse_reply($bytes);
	my $env = @r ? json_of($r[0]{body}) : undef;
	my $ok = @r == 1 && !exists $r[0]{junk} && $r[0]{status} == $status
	  && ref $env eq 'HASH' && defined $env->{error_code} && defined $env->{message}
	  && ref $env->{details} eq 'HASH' && ($env->{request_id} // '') eq ($r[0]{headers}{'x-request-id'} // 'none')
	  && ($r[0]{headers}{'content-type'} // '') eq 'application/json';
	ok($ok, "$what: one reply, $status, the envelope" . ($env ? " ($env->{error_code})" : ''))
	  or diag(substr($bytes, 0, 600));
	return $env;
}

my $params = join '&', map { "p$_=1" } 1 .. 1000;
my @library = (
	[ 'unknown HTTP version', "GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 505 ],
	[ 'request line without a version', "GET /\r\n\r\n", 400 ],
	[ 'header line without a colon', "GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400 ],
	[ 'Content-Length not a number', "POST /users/login HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n", 400 ],
	[ 'Content-Length overflowing', "POST /users/login HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413 ],
	[ 'bad chunked encoding', "POST /users/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n", 400 ],
	[ 'header block too large', "GET /health HTTP/1.1\r\nHost: x\r\n" . join('', map { "X-$_: " . ('v' x 1000) . "\r\n" } 1 .. 300) . "\r\n", 431 ],
	[ 'URL past the connection memory', 'GET /' . ('a' x 300_000) . " HTTP/1.1\r\nHost: x\r\n\r\n", 414 ],
	[ 'URL over 8 KiB', 'GET /rooms?location=' . ('a' x 9000) . " HTTP/1.1\r\nHost: x\r\n\r\n", 414 ],
	[ '1,000 query parameters', "GET /rooms?$params HTTP/1.1\r\nHost: x\r\n\r\n", 414 ],
	[ '50,000 query parameters', 'GET /rooms?' . ('a&' x 50_000) . " HTTP/1.1\r\nHost: x\r\n\r\n", 414 ],
	[ 'Content-Length over 8 MiB', "POST /users/login HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n{}", 413 ],
	[ 'Content-Length over 1 MiB, Expect: 100-continue', "POST /users/login HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n", 413 ],
	[ 'a body over 1 MiB sent at once', "POST /users/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" . ('x' x 2_000_000), 413 ],
	[ 'NUL in a path', "GET /bookings/1%00 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $user\r\n\r\n", 400 ],
	[ 'NUL in a query value', "GET /rooms?location=HQ%00x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $user\r\n\r\n", 400 ],
	[ 'raw NUL byte in a path', "GET /bookings/1\0x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $user\r\n\r\n", 400 ],
	[ 'NUL in a query name', "GET /rooms?loc%00ation=HQ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $user\r\n\r\n", 400 ],
);
for my $c (@library)
{
	my ($what, $bytes, $status) = @$c;
	my ($reply, $closed) = raw_request($a, $bytes, 10);
	my $env = one_envelope($reply, $status, $what);
	is($env->{error_code}, 'VALIDATION_ERROR', "$what: VALIDATION_ERROR") if $what =~ /NUL/;
}

# NUL in a JSON string, anywhere: 400 VALIDATION_ERROR (an escaped backslash is no NUL).
for my $body ('{"t":"a\u0000b"}', '{"j":{"k":["\u0000"]}}', '{"ta":["x","\u0000"]}', '{"t\u0000":"x"}')
{
	my $r = http($a, 'POST', '/rpc/edge_types', $body, $user);
	is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 400, 'VALIDATION_ERROR' ], "NUL in JSON $body: 400 VALIDATION_ERROR");
}
my $r = http($a, 'POST', '/rpc/edge_types', '{"t":"a\\\\u0000b"}', $user);
is_deeply([ $r->{status}, $r->{json}{t} ], [ 200, 'a\\u0000b' ], 'an escaped backslash before u0000 is text, not a NUL');

# Every argument kind: a good value passes through unchanged, a bad one is refused.
my @types = (
	[ 'integer', { i => 7 }, { i => 7 }, [ { i => '7' }, { i => 1.5 }, { i => [1] } ] ],
	[ 'numeric', { n => 2.5 }, { n => 2.5 }, [ { n => 'x' }, { n => {} } ] ],
	[ 'boolean', { b => JSON::PP::true }, { b => JSON::PP::true }, [ { b => 'true' }, { b => 1 } ] ],
	[ 'text', { t => "it's \"q\" \\ {x}" }, { t => "it's \"q\" \\ {x}" }, [ { t => 5 }, { t => [] } ] ],
	[ 'jsonb', { j => { k => [ 1, 'two' ] } }, { j => { k => [ 1, 'two' ] } }, [] ],
	[ 'text[]', { ta => [ 'a,b', '{c}', '"d"', 'e\\' ] }, { ta => [ 'a,b', '{c}', '"d"', 'e\\' ] }, [ { ta => 'a' }, { ta => [1] } ] ],
	[ 'bigint[]', { ia => [ 1, -2 ] }, { ia => [ 1, -2 ] }, [ { ia => '{1,2}' }, { ia => [ '1' ] }, { ia => [1.5] } ] ],
	[ 'date', { d => '2030-01-02' }, { d => '2030-01-02' }, [ { d => 'someday' }, { d => 20300102 } ] ],
	[ 'uuid', { u => '00000000-0000-0000-0000-000000000001' }, { u => '00000000-0000-0000-0000-000000000001' }, [ { u => 'nope' } ] ],
);
for my $t (@types)
{
	my ($type, $good, $want, $bads) = @$t;
	my $ok = http($a, 'POST', '/rpc/edge_types', $good, $user);
	my ($k) = keys %$want;
	is_deeply([ $ok->{status}, $ok->{json}{$k} ], [ 200, $want->{$k} ], "$type in JSON: passed as given");
	for my $bad (@$bads)
	{
		my $b = http($a, 'POST', '/rpc/edge_types', $bad, $user);
		ok(($b->{status} == 422 || $b->{status} == 400) && ($b->{json}{error_code} // '') eq 'VALIDATION_ERROR',
			"$type in JSON: bad value " . JSON::PP->new->canonical->encode($bad) . " refused ($b->{status})")
		  or diag($b->{content});
	}
}

# Lists in a query string, element by element.
my %query = (
	'ia=1,2,-3' => [ 200, { ia => [ 1, 2, -3 ] } ],
	'ia=' => [ 200, { ia => [] } ],
	'ia={1},{2}' => [ 422 ],
	'ia=1,,2' => [ 422 ],
	'ia=1,' => [ 422 ],
	'ia=1%2C2' => [ 200, { ia => [ 1, 2 ] } ],
	'ia=1;2' => [ 422 ],
	'ia=1%20OR%201=1' => [ 422 ],
	'ia=99999999999999999999' => [ 422 ],
	'ta=a,b' => [ 200, { ta => [ 'a', 'b' ] } ],
	'ta=%7Bx%7D,%22y%22,z%5C' => [ 200, { ta => [ '{x}', '"y"', 'z\\' ] } ],
	'ta=NULL' => [ 200, { ta => ['NULL'] } ],
);
for my $q (sort keys %query)
{
	my ($status, $want) = @{ $query{$q} };
	my $x = http($a, 'POST', "/rpc/edge_types?$q", '{}', $user);
	if ($want)
	{
		my ($k) = keys %$want;
		is_deeply([ $x->{status}, $x->{json}{$k} ], [ $status, $want->{$k} ], "query list $q: typed element by element");
	}
	else
	{
		is_deeply([ $x->{status}, $x->{json}{error_code} ], [ $status, 'VALIDATION_ERROR' ], "query list $q: refused");
	}
}
my $common = http($a, 'GET', "/availability/common?users={$uid},{$uid}&from=2030-01-01T00:00:00Z&to=2030-01-02T00:00:00Z", undef, $user);
is_deeply([ $common->{status}, $common->{json}{error_code} ], [ 422, 'VALIDATION_ERROR' ], 'GET /availability/common?users={1},{2}: refused');

# A message cut at its length limit is cut on a character boundary.
my $long = 'é' x 400;
my $u = http($a, 'POST', '/rpc/edge_types', qq({"$long":1}), $user);
ok($u->{status} == 422 && length($u->{json}{message} // '') > 100, 'a long UTF-8 message stays in the envelope')
  or diag($u->{content});

# Keep-alive: a refused request after a good one on the same connection.
my ($two) = raw_request($a, "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n");
my @both = parse_reply($two);
is_deeply([ map { $_->{status} // 'junk' } @both ], [ 200, 413 ], 'keep-alive: a good reply then one 413 envelope');

is(http($a, 'GET', '/health')->{status}, 200, 'still serving');
my @fivexx = grep { /"status":5\d\d/ } adapter_log_lines($a);
is(scalar @fivexx, 0, 'no 5xx in the request log') or diag(join "\n", @fivexx);
is(stop_adapter($a), 0, 'adapter stops cleanly');
done_testing();
