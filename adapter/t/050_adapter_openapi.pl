# Routes declared once: booking.http_routes (SQL) is the one declaration.
# The routes the adapter serves, its /openapi.json and docs/api.md must all
# say what the rows say; the document must pass two validators no one here
# wrote (@apidevtools/swagger-parser, @redocly/cli lint with its
# recommended rules: 0 errors, 0 warnings).  A new route is one INSERT and
# appears everywhere without a restart (negative control: the committed
# docs/api.md no longer agrees, and the comparison says so).
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(usleep);

my $nodedir = "$ENV{TESTDIR}/../test/node";
plan skip_all => "npm ci has not run in $nodedir" unless -x "$nodedir/node_modules/.bin/redocly";

my $node = setup_node();
my $a = start_adapter($node);
my $tmp = $PostgreSQL::Test::Utils::tmp_check;

sub openapi
{
	my $r = http($a, 'GET', '/openapi.json');
	is($r->{status}, 200, 'GET /openapi.json 200');
	return $r;
}

# Operations of the document, as "METHOD path operationId", without the adapter's own.
sub doc_operations
{
	my $doc = shift;
	my @ops;
	for my $path (sort keys %{ $doc->{paths} })
	{
		next if $path =~ m{^/(rpc/|health$|ready$|metrics$|openapi\.json$)};
		push @ops, map { uc($_) . " $path $doc->{paths}{$path}{$_}{operationId}" } sort keys %{ $doc->{paths}{$path} };
	}
	return [ sort @ops ];
}

sub row_operations
{
	return [ sort split /\n/, $node->safe_psql('postgres', q{
	  SELECT method || ' ' || path || ' ' || coalesce(operation_id, function_name) FROM booking.http_routes}) ];
}

# Every row is served: the adapter answers with the function behind it (an
# error from the function, or a success), never "no such route" or 405.
sub served_by_adapter
{
	my @bad;
	for my $row (split /\n/, $node->safe_psql('postgres', q{SELECT method, path FROM booking.http_routes ORDER BY 1, 2}))
	{
		my ($method, $path) = split /\|/, $row;
		my $url = $path;
		$url =~ s/\{id\}/00000000-0000-0000-0000-000000000000/g if $path =~ m{^/reservations/};
		$url =~ s/\{[a-z_]+\}/999999/g;
		my $r = http($a, $method, $url, $method =~ /^(POST|PUT|PATCH)$/ ? {} : undef, undef,
			{ Accept => 'application/json' });
		my $why = $r->{json}{message} // '';
		push @bad, "$method $path: $r->{status} $why"
		  if $r->{status} == 405 || $why eq 'no such route' || $r->{status} >= 500;
	}
	return \@bad;
}

sub validate
{
	my $file = shift;
	my $out = `node $nodedir/validate-openapi.mjs $file`;
	my $res = eval { decode_json($out) } // { swagger_parser => "no answer: $out" };
	note "validators: $out";
	return $res;
}

sub api_md
{
	my $file = shift;
	return scalar `node $nodedir/api-md.mjs < $file`;
}

my $r = openapi();
my $file = "$tmp/openapi.json";
open my $fh, '>', $file or die; print $fh $r->{content}; close $fh;

my $v = validate($file);
is($v->{swagger_parser}, 'valid', '@apidevtools/swagger-parser: the document is valid');
is($v->{redocly}{version}, '2.77.0', '@redocly/cli is the pinned version');
is_deeply([ $v->{redocly}{errors}, $v->{redocly}{warnings} ], [ 0, 0 ], '@redocly/cli lint: 0 errors, 0 warnings')
  or diag explain $v->{problems};

is_deeply(doc_operations($r->{json}), row_operations(), 'openapi.json has exactly the routes of booking.http_routes');
is_deeply(served_by_adapter(), [], 'the adapter serves every route of booking.http_routes');

# Public routes need no token; all others declare the bearer scheme.
my @public = sort split /\n/, $node->safe_psql('postgres', q{SELECT path FROM booking.http_routes WHERE public});
is_deeply([ sort grep { my $p = $_; grep { ref $_ eq 'HASH' && $_->{security} && !@{ $_->{security} } }
	values %{ $r->{json}{paths}{$p} } } grep { !m{^/(health|ready|metrics|openapi\.json)$} } keys %{ $r->{json}{paths} } ],
	\@public, 'security: [] exactly on the public routes');

my %ids;
$ids{ $_->{operationId} }++ for map { values %$_ } values %{ $r->{json}{paths} };
is_deeply([ grep { $ids{$_} > 1 } sort keys %ids ], [], 'operationIds are unique');

my $committed = slurp_file("$ENV{TESTDIR}/../docs/api.md");
my $generated = api_md($file);
open $fh, '>', "$tmp/api.md" or die; print $fh $generated; close $fh;
ok($committed eq $generated, 'docs/api.md is what the document generates')
  or diag "docs/api.md is stale: regenerate it with `make api-doc` (generated copy: $tmp/api.md)";

# --- negative control: one INSERT adds a route everywhere, and the docs test notices ---
$node->safe_psql('postgres', q{
INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id)
VALUES ('GET', '/rooms/{id}/details', 'get_room', 200, 'get_room_details')});
# The adapter reads the catalog every 10 s and on a miss (at most once a second).
usleep(1_100_000);
http($a, 'POST', '/rpc/no_such_function_here', {});
$r = openapi();
ok($r->{json}{paths}{'/rooms/{id}/details'}{get}, 'a route inserted in SQL is in /openapi.json at once');
is_deeply(doc_operations($r->{json}), row_operations(), 'the document still has exactly the rows');
open $fh, '>', $file or die; print $fh $r->{content}; close $fh;
isnt(api_md($file), $committed, 'negative control: docs/api.md now disagrees, and the comparison sees it');
my $user_id = make_user($node, 'dora@example.com', 'user');
my $token = token_for($a, 'dora@example.com', 'user');
my $room = $node->safe_psql('postgres', q{INSERT INTO booking.rooms (name, location, capacity) VALUES ('R', 'HQ', 4) RETURNING id});
$r = http($a, 'GET', "/rooms/$room/details", undef, $token);
is_deeply([ $r->{status}, $r->{json}{id} ], [ 200, $room ], 'and the adapter serves it, without a restart');

# A row that names a missing function or binds a non-argument is refused.
my ($rc, $out, $err) = $node->psql('postgres', q{
INSERT INTO booking.http_routes (method, path, function_name, success_status) VALUES ('GET', '/nowhere', 'no_such_fn', 200)});
like($err, qr/calls api\.no_such_fn, which does not exist/, 'a route to a missing function is refused');
($rc, $out, $err) = $node->psql('postgres', q{
INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id)
VALUES ('GET', '/rooms/{room}/x', 'get_room', 200, 'get_room_x')});
like($err, qr/binds "room", which is not an argument of api\.get_room/, 'a path parameter that is no argument is refused');

stop_adapter($a);
done_testing();
