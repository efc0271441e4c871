# AdapterTest — shared by the adapter's TAP tests: a cluster with the
# extension, the adapter started against it, an HTTP client and a JWT minter.
package AdapterTest;

use strict;
use warnings;
use Exporter 'import';
use Digest::SHA qw(hmac_sha256);
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use POSIX ':sys_wait_h';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(setup_node start_adapter stop_adapter http mint_jwt token_for make_user
  $SECRET json_of adapter_log_lines raw_request parse_reply);

our $SECRET = 'tap-secret-0123456789abcdef0123456789abcdef';
my @started;    # adapters still running when a test dies are stopped at exit
my $parent = $$;
END { kill 'KILL', @started if $$ == $parent && @started; }
my $json = JSON::PP->new->canonical->allow_nonref;

sub json_of { my $s = shift; return eval { $json->decode($s) }; }

sub setup_node
{
	my $node = PostgreSQL::Test::Cluster->new(shift // 'db');
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = '$SECRET'
timezone = 'UTC'
max_connections = 60
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION pg_booking CASCADE');
	# Every test client is 127.0.0.1: lift the per-IP limits (when the
	# extension has them); the rate-limit test tightens one on purpose.
	$node->safe_psql('postgres', q{DO $$ BEGIN
	  IF to_regclass('booking.rate_limits') IS NOT NULL THEN
	    UPDATE booking.rate_limits SET max_requests = 1000;
	  END IF; END $$});
	return $node;
}

# Start the adapter (ADAPTER_BIN, or a wrapper such as valgrind in front of it).
sub start_adapter
{
	my ($node, %opt) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $bin = $ENV{ADAPTER_BIN} or die "ADAPTER_BIN is not set";
	my $log = $PostgreSQL::Test::Utils::tmp_check . "/adapter_$port.log";
	my $err = $PostgreSQL::Test::Utils::tmp_check . "/adapter_$port.err";
	my %env = (
		ADAPTER_PORT => $port,
		ADAPTER_DB => 'host=' . $node->host . ' port=' . $node->port
		  . ' dbname=postgres user=booking_authenticator connect_timeout=2',
		ADAPTER_JWT_SECRET => $SECRET,
		ADAPTER_POOL_SIZE => 4,
		%{ $opt{env} // {} });
	my @cmd = (@{ $opt{wrapper} // [] }, $bin, @{ $opt{args} // [] });
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		$ENV{$_} = $env{$_} for keys %env;
		open STDOUT, '>', $log or die;
		open STDERR, '>', $err or die;
		exec @cmd or die "exec: $!";
	}
	push @started, $pid;
	my $a = { pid => $pid, port => $port, log => $log, err => $err,
		url => "http://127.0.0.1:$port", http => HTTP::Tiny->new(timeout => 30, keep_alive => 1) };
	my $deadline = time + ($opt{start_timeout} // 10);
	while (time < $deadline)
	{
		my $r = HTTP::Tiny->new(timeout => 1)->get("$a->{url}/health");
		if ($r->{status} == 200)
		{
			$a->{ready_after} = time;
			return $a;
		}
		die "adapter exited early: " . slurp_file($err) if waitpid($pid, WNOHANG) == $pid;
		usleep(5_000);
	}
	die "adapter did not answer /health: " . slurp_file($err);
}

# SIGTERM; returns the exit status.
sub stop_adapter
{
	my ($a, $sig) = @_;
	kill $sig // 'TERM', $a->{pid};
	waitpid($a->{pid}, 0);
	my $rc = $? >> 8;
	@started = grep { $_ != $a->{pid} } @started;
	return $rc;
}

# http($a, METHOD, path, body (ref: JSON-encoded; string: as is), token, {headers})
sub http
{
	my ($a, $method, $path, $body, $token, $headers) = @_;
	my %h = %{ $headers // {} };
	$h{Authorization} = "Bearer $token" if defined $token;
	my %o = (headers => \%h);
	if (defined $body)
	{
		$o{content} = ref $body ? $json->encode($body) : $body;
		$h{'Content-Type'} //= 'application/json';
	}
	my $t0 = time;
	my $r = $a->{http}->request($method, "$a->{url}$path", \%o);
	$r->{ms} = (time - $t0) * 1000;
	$r->{json} = json_of($r->{content}) if length($r->{content} // '');
	return $r;
}

sub mint_jwt
{
	my ($claims, %o) = @_;
	my $header = encode_base64url($json->encode({ alg => $o{alg} // 'HS256', typ => 'JWT' }));
	my $payload = encode_base64url($json->encode($claims));
	my $sig = ($o{alg} // 'HS256') eq 'none' ? ''
	  : encode_base64url(hmac_sha256("$header.$payload", $o{secret} // $SECRET));
	return "$header.$payload.$sig";
}

# A user with the given role, created in SQL; returns its id.
sub make_user
{
	my ($node, $email, $role) = @_;
	return $node->safe_psql('postgres', qq{
INSERT INTO booking.users (email, full_name, password_hash, role)
VALUES ('$email', 'Test $role', booking.hash_password('password-$role'), '$role') RETURNING id});
}

# Log in over HTTP; returns the access token.
sub token_for
{
	my ($a, $email, $role) = @_;
	my $r = http($a, 'POST', '/users/login', { email => $email, password => "password-$role" });
	die "login of $email failed: $r->{status} $r->{content}" unless $r->{status} == 200;
	return $r->{json}{access_token};
}

sub adapter_log_lines
{
	my $a = shift;
	return grep { length } split /\n/, slurp_file($a->{log});
}

# Bytes as given on a fresh connection (then half-closed); everything the
# server sent until it closed or $timeout passed: (reply bytes, closed?).
sub raw_request
{
	my ($a, $bytes, $timeout) = @_;
	require IO::Socket::INET;
	require IO::Select;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $a->{port}, Timeout => 5)
	  or return ('', 0);
	binmode $s;
	local $SIG{PIPE} = 'IGNORE';
	syswrite($s, $bytes);
	shutdown($s, 1);
	my ($out, $closed) = ('', 0);
	my $deadline = time + ($timeout // 10);
	while (time < $deadline && IO::Select->new($s)->can_read($deadline - time))
	{
		my $n = sysread($s, my $buf, 65536);
		if (!$n) { $closed = 1; last; }
		$out .= $buf;
	}
	close $s;
	return ($out, $closed);
}

# Split raw reply bytes into responses: [{status, headers => {lc name => value}, body}]
sub parse_reply
{
	my ($bytes) = @_;
	my @r;
	while ($bytes =~ s/\AHTTP\/1\.[01] (\d{3})[^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n//)
	{
		my ($status, $head) = ($1, $2);
		my %h;
		for (split /\r\n/, $head) { my ($k, $v) = split /:\s*/, $_, 2; $h{ lc $k } .= $v; }
		my $len = $h{'content-length'} // 0;
		push @r, { status => $status, headers => \%h, body => substr($bytes, 0, $len, '') };
	}
	push @r, { junk => $bytes } if length $bytes;
	return @r;
}

1;
