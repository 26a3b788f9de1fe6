# Copyright (c) parallel_apply authors
#
# What newer publishers send: a STREAM ABORT for a transaction, or a
# sub-transaction, of which the subscriber never saw a change (a PostgreSQL
# 18 publisher sends these when it truncates an already-aborted
# transaction; PostgreSQL 18.6's own apply worker crashes in a loop on it).
# A PostgreSQL 15 publisher never sends one, so the subscription connects
# through a proxy that forwards the replication stream unchanged and, right
# after the first STREAM STOP, adds two such messages: the abort of an xid
# never streamed, and the abort of an unknown sub-transaction of the stream
# that is open.  Both are ignored: no error, no restart, both sides equal.
# Then, once each, a STREAM STOP and a STREAM COMMIT without STREAM START:
# a protocol error that names what is wrong, and the engine goes on.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use IO::Select;
use POSIX ();
use IO::Socket::INET;
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = pa_publisher('publisher',
	conf => "logical_decoding_work_mem = 64kB\n");
my $sub = pa_subscriber('subscriber', workers => 4);

my $ddl = 'CREATE TABLE t (id int PRIMARY KEY, payload text)';
$pub->safe_psql('postgres', $ddl);
$sub->safe_psql('postgres', $ddl);

my $flag = "${PostgreSQL::Test::Utils::tmp_check}/034_injected";
unlink $flag;

sub write_all
{
	my ($fh, $data) = @_;
	while (length $data)
	{
		my $n = syswrite($fh, $data);
		POSIX::_exit(0) unless defined $n;
		substr($data, 0, $n, '');
	}
	return;
}

# a CopyData message holding XLogData with the given header and message
sub xlogdata
{
	my ($hdr, $message) = @_;
	my $body = $hdr . $message;
	return 'd' . pack('N', 4 + length($body)) . $body;
}

# ... and a STREAM ABORT (protocol version 2: xid, subxid)
sub stream_abort_msg
{
	my ($hdr, $xid, $subxid) = @_;
	return xlogdata($hdr, 'A' . pack('N N', $xid, $subxid));
}

sub touch
{
	my ($file) = @_;
	open(my $f, '>', $file) or POSIX::_exit(1);
	close $f;
	return;
}

# forward both ways; parse what the publisher sends, and inject after the
# first STREAM STOP.  It runs in forked children, which leave by
# POSIX::_exit: an exit would run the test's END blocks, which stop the nodes.
sub relay
{
	my ($client, $server) = @_;
	my $sel = IO::Select->new($client, $server);
	my ($buf, $last_xid, $injected) = ('', undef, 0);
	while (1)
	{
		foreach my $fh ($sel->can_read)
		{
			my $n = sysread($fh, my $data, 65536);
			POSIX::_exit(0) unless $n;
			if ($fh == $client)
			{
				write_all($server, $data);
				next;
			}
			$buf .= $data;
			my $out = '';
			while (length($buf) >= 5)
			{
				my ($type, $len) = unpack('a N', $buf);
				last if length($buf) < 1 + $len;
				my $msg = substr($buf, 0, 1 + $len, '');
				$out .= $msg;
				next unless $type eq 'd' && substr($msg, 5, 1) eq 'w';
				my $hdr = substr($msg, 5, 25);
				my $kind = substr($msg, 30, 1);
				$last_xid = unpack('N', substr($msg, 31, 4)) if $kind eq 'S';
				# asked for by the test: a STREAM STOP, or a STREAM COMMIT,
				# without STREAM START, once, after a COMMIT
				if ($kind eq 'C' && -e "$flag.stop" && !-e "$flag.stop.done")
				{
					$out .= xlogdata($hdr, 'E');
					touch("$flag.stop.done");
				}
				if ($kind eq 'C' && -e "$flag.commit" && !-e "$flag.commit.done")
				{
					$out .= xlogdata($hdr,
						'c' . pack('N C', 4000000000, 0) . substr($msg, 32, 24));
					touch("$flag.commit.done");
				}
				if ($kind eq 'E' && !$injected && defined $last_xid)
				{
					$out .= stream_abort_msg($hdr, $last_xid + 1000000, $last_xid + 1000000);
					$out .= stream_abort_msg($hdr, $last_xid, $last_xid + 500000);
					$injected = 1;
					open(my $f, ">", $flag) or POSIX::_exit(1);
					print $f "$last_xid\n";
					close $f;
				}
			}
			write_all($client, $out);
		}
	}
}

my $listen = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Listen => 16,
	ReuseAddr => 1) or die "cannot listen: $!";
my $proxy_port = $listen->sockport;
my $proxy_pid = fork();
die "fork: $!" unless defined $proxy_pid;
if ($proxy_pid == 0)
{
	$SIG{CHLD} = 'IGNORE';
	while (1)
	{
		my $client = $listen->accept or next;
		my $pid = fork();
		if (!defined $pid || $pid)
		{
			close $client;
			next;
		}
		my $path = $pub->host . '/.s.PGSQL.' . $pub->port;
		my $server = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path)
		  or POSIX::_exit(1);
		relay($client, $server);
		POSIX::_exit(0);
	}
}
close $listen;

$pub->safe_psql('postgres', 'CREATE PUBLICATION pub FOR ALL TABLES');
$sub->safe_psql('postgres',
	"CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 port=$proxy_port dbname=postgres sslmode=disable gssencmode=disable' PUBLICATION pub WITH (streaming = on)"
);
pa_wait_sync($pub, $sub, 'sub');
pa_attach($sub, 'sub');
my $logpos = pa_log_pos($sub);
my $restarts = pa_stat($sub, 'sub', 'restarts');

my $a = $pub->background_psql('postgres', on_error_stop => 1);
$a->query_safe('BEGIN');
$a->query_safe(
	"INSERT INTO t SELECT g, repeat('a', 100) FROM generate_series(1, 3000) g");
$a->query_safe('SAVEPOINT s');
$a->query_safe(
	"INSERT INTO t SELECT g, repeat('b', 100) FROM generate_series(3001, 6000) g");
$a->query_safe('ROLLBACK TO SAVEPOINT s');
$a->query_safe(
	"INSERT INTO t SELECT g, repeat('c', 100) FROM generate_series(6001, 8000) g");
$a->query_safe('COMMIT');
$a->quit;
$pub->safe_psql('postgres', "INSERT INTO t VALUES (0, 'after')");
$pub->wait_for_catchup('sub');

ok(-e $flag, 'the proxy added the STREAM ABORTs after a STREAM STOP');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM t'),
	'5001', 'the streamed transaction arrived without its rolled back part');
pa_check_equal($pub, $sub, 't');
unlike(pa_log_since($sub, $logpos), qr/ERROR:/,
	'the unknown STREAM ABORTs raised no error');
SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless pa_engine();
	is(pa_stat($sub, 'sub', 'restarts'), $restarts, 'the engine did not restart');
	cmp_ok(pa_stat($sub, 'sub', 'streams_applied'), '>=', 1,
		'the stream was applied while it streamed');
}

# a STREAM STOP, then a STREAM COMMIT, without STREAM START: a protocol
# error with its message; the engine starts again and goes on
SKIP:
{
	skip 'PA_NO_ENGINE set', 6 unless pa_engine();
	my $id = 100000;
	foreach my $case (['stop', 'STREAM STOP without STREAM START'],
		['commit', 'STREAM COMMIT for transaction 4000000000 without STREAM START'])
	{
		my ($what, $text) = @$case;
		$logpos = pa_log_pos($sub);
		touch("$flag.$what");
		$pub->safe_psql('postgres', "INSERT INTO t VALUES ($id, '$what')");
		$id++;
		pa_wait_log($sub, qr/ERROR:  \Q$text\E/, $logpos);
		ok(-e "$flag.$what.done", "the proxy added the $what");
		pa_poll($sub,
			"SELECT last_error = '$text' FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			't', "stat_subscription shows the protocol error");
		$pub->safe_psql('postgres', "INSERT INTO t VALUES ($id, '$what')");
		$id++;
		pa_wait_engine($sub, 'sub');
		$pub->wait_for_catchup('sub');
		pa_check_equal($pub, $sub, 't');
	}
}
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
kill 'KILL', $proxy_pid;
done_testing();
