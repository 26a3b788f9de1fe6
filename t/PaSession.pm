# PaSession: a persistent psql session on a node, for tests that must hold a
# connection (a lock, a snapshot) or run many short queries without a
# process per query.  One connection, one transaction per query.
package PaSession;

use strict;
use warnings;
use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(session_start session_query session_quit session_kill);

sub session_start
{
	my ($node) = @_;
	my $s = { in => '', out => '', err => '', n => 0 };
	$s->{timer} = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
	$s->{h} = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d',
			$node->connstr('postgres'), '-f', '-'
		],
		'<', \$s->{in}, '>', \$s->{out}, '2>', \$s->{err}, $s->{timer});
	return $s;
}

sub session_query
{
	my ($s, $sql) = @_;
	$s->{n}++;
	my $banner = "__pa_query_$s->{n}__";
	$s->{out} = '';
	$s->{in} .= "$sql;\n\\echo $banner\n";
	$s->{timer}->start($PostgreSQL::Test::Utils::timeout_default);
	eval {
		$s->{h}->pump until $s->{out} =~ /\Q$banner\E\n/;
		1;
	} or die "background psql failed on <$sql>: $@\nstderr: $s->{err}";
	(my $r = $s->{out}) =~ s/\n?\Q$banner\E\n//;
	return $r;
}

sub session_quit
{
	my ($s) = @_;
	$s->{in} .= "\\q\n";
	$s->{h}->finish;
	return;
}

# the server went away under it: just make sure the process is gone
sub session_kill
{
	my ($s) = @_;
	eval { $s->{h}->kill_kill; 1 };
	return;
}

1;
