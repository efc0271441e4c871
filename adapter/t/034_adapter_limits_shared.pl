# Rate limits are shared by every adapter replica and by psql callers,
# because the accounting lives in PostgreSQL's shared memory: the 6th login
# in 10 s from one client IP is refused whichever way it comes in, while
# another IP still logs in.  Behind a trusted load balancer the client IP
# comes from X-Forwarded-For; from anyone else that header is ignored.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use AdapterTest;

my $node = setup_node('limits');
make_user($node, 'ann@example.com', 'user');
# Back to the default rule for logins: 5 per 10 s per client IP.
$node->safe_psql('postgres', q{UPDATE booking.rate_limits SET max_requests = 5, window_length = '10 s'
                               WHERE endpoint = 'login'});

my %trust = (env => { ADAPTER_TRUSTED_PROXIES => '127.0.0.0/8' });
my $a = start_adapter($node, %trust);
my $b = start_adapter($node, %trust);
my $login = { email => 'ann@example.com', password => 'password-user' };
my $from = sub { { 'X-Forwarded-For' => "192.0.2.99, $_[0]" } };   # the balancer appends the client

my @seen;
push @seen, http($a, 'POST', '/users/login', $login, undef, $from->('198.51.100.7'))->{status} for 1 .. 2;
push @seen, http($b, 'POST', '/users/login', $login, undef, $from->('198.51.100.7'))->{status} for 1 .. 2;
# psql, as the adapter would call it for that client.
my ($rc, $out, $err) = $node->psql('postgres', q{
SELECT set_config('request.client_ip', '198.51.100.7', false);
SELECT api.login('ann@example.com', 'password-user') ? 'access_token'});
push @seen, $rc == 0 && $out =~ /\bt$/ ? 200 : "psql: $err";
is_deeply(\@seen, [ (200) x 5 ], 'five logins from one IP through two adapters and psql are admitted');

my $r = http($a, 'POST', '/users/login', $login, undef, $from->('198.51.100.7'));
is($r->{status}, 429, 'the 6th, through adapter A, is refused');
is($r->{json}{error_code}, 'RATE_LIMIT_EXCEEDED', '... with RATE_LIMIT_EXCEEDED');
cmp_ok($r->{headers}{'retry-after'} // 0, '>=', 1, '... and Retry-After');
is(http($b, 'POST', '/users/login', $login, undef, $from->('198.51.100.7'))->{status}, 429,
	'the 7th, through adapter B, is refused too');
($rc, $out, $err) = $node->psql('postgres', q{
SELECT set_config('request.client_ip', '198.51.100.7', false);
SELECT api.login('ann@example.com', 'password-user')});
like($err, qr/too many requests to "login"/, 'and so is the 8th, from psql');
is(http($b, 'POST', '/users/login', $login, undef, $from->('198.51.100.8'))->{status}, 200,
	'another IP still logs in');

# Without trusting the balancer, X-Forwarded-For is ignored: a client cannot
# pick a fresh key per request.
my $c = start_adapter($node);
my @direct = map { http($c, 'POST', '/users/login', $login, undef, { 'X-Forwarded-For' => "203.0.113.$_" })->{status} } 1 .. 6;
is_deeply(\@direct, [ (200) x 5, 429 ], 'an untrusted peer: spoofed X-Forwarded-For values share one key');
# A malformed forwarded address does not replace the peer's either.
# (a changed rule starts its accounting afresh)
$node->safe_psql('postgres', q{UPDATE booking.rate_limits SET window_length = '11 s' WHERE endpoint = 'login'});
my @junk = map { http($a, 'POST', '/users/login', $login, undef, { 'X-Forwarded-For' => "not-an-ip-$_" })->{status} } 1 .. 6;
is_deeply(\@junk, [ (200) x 5, 429 ], 'a malformed X-Forwarded-For falls back to the peer address');

is(stop_adapter($_), 0, 'adapter exits 0 on SIGTERM') for $a, $b, $c;
$node->stop;
done_testing();
