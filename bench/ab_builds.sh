#!/usr/bin/env bash
#
# ab_builds.sh -- the same pa_bench.sh benchmark against two builds of the
# engine, in one run, alternating their order (a b, b a, a b, ...), so that a
# change's cost is measured against the build before it on the same machine
# at the same time (this VM's noise is 10-30% between runs).
#
#   bash bench/ab_builds.sh --a 387e402 --b work --repeat 2 \
#        -- --script tpcb-like --workers 4 --no-builtin
#
# --a/--b name a git revision of this repository, or "work" for the working
# tree as it is.  Each is built and installed into a private copy of the
# PostgreSQL installation (OUT/<name>/root), so the system's installation is
# left alone (tests may be using it); pa_bench.sh then runs with --pg-bin
# pointing into that copy.  Everything after "--" goes to pa_bench.sh.
#
# Prints, per build and worker count, the "applied s" (time until the backlog
# is applied on the subscriber) and tx/s of every run, their median, and
# b's median against a's.  Exit status: 0 when every run succeeded, 2 when one
# failed (its results directory says why), 1 on a usage or build error.
#
set -euo pipefail

A=""
B=""
REPEAT=2
OUT="${TMPDIR:-/tmp}/pa_ab-$(date +%Y%m%d-%H%M%S)"
PG_ROOT_BIN="$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)"
BENCH_ARGS=()

usage() {
	sed -n '3,21p' "$0" | sed 's/^# \{0,1\}//'
	echo "options: --a REV --b REV [--repeat N (default $REPEAT)] [--out DIR] -- <pa_bench.sh args>"
}

while [ $# -gt 0 ]; do
	case "$1" in
		--a) A="$2"; shift 2 ;;
		--b) B="$2"; shift 2 ;;
		--repeat) REPEAT="$2"; shift 2 ;;
		--out) OUT="$2"; shift 2 ;;
		-h|--help) usage; exit 0 ;;
		--) shift; BENCH_ARGS=("$@"); break ;;
		*) echo "ab_builds.sh: unknown option $1" >&2; usage >&2; exit 1 ;;
	esac
done
[ -n "$A" ] && [ -n "$B" ] || { usage >&2; exit 1; }
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "ab_builds.sh: --repeat must be a positive integer" >&2; exit 1; }

HERE="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$OUT"
chmod 755 "$OUT"

# the installation to copy: bindir/.. holds bin and lib; the share dir is
# where pg_config says (Debian keeps it apart, under /usr/share)
PG_PREFIX="$(cd "$PG_ROOT_BIN/.." && pwd)"
PG_SHARE="$("$PG_ROOT_BIN/pg_config" --sharedir 2>/dev/null || pg_config --sharedir)"

build() {	# build NAME REV: OUT/NAME/root is a PostgreSQL installation with REV's engine
	local name="$1" rev="$2" src root
	root="$OUT/$name/root"
	mkdir -p "$root$PG_PREFIX" "$root$PG_SHARE"
	cp -a "$PG_PREFIX/." "$root$PG_PREFIX/"
	cp -a "$PG_SHARE/." "$root$PG_SHARE/"
	if [ "$rev" = work ]; then
		src="$OUT/$name/src"
		mkdir -p "$src"
		(cd "$HERE" && tar -cf - --exclude=./.git --exclude='./tmp_check*' .) | tar -C "$src" -xf -
	else
		src="$OUT/$name/src"
		git -C "$HERE" archive --format=tar --prefix=src/ "$rev" | tar -C "$OUT/$name" -xf -
	fi
	(cd "$src" && make -s clean >/dev/null 2>&1 || true
		make -s PG_CONFIG="$PG_ROOT_BIN/pg_config" >"$OUT/$name/build.log" 2>&1 &&
		make -s install PG_CONFIG="$PG_ROOT_BIN/pg_config" DESTDIR="$root" >>"$OUT/$name/build.log" 2>&1) ||
		{ echo "ab_builds.sh: building $rev failed, see $OUT/$name/build.log" >&2; exit 1; }
	chmod -R a+rX "$OUT/$name"
	echo "$name = $rev ($(git -C "$HERE" rev-parse --short "${rev/#work/HEAD}" 2>/dev/null)$([ "$rev" = work ] && echo ' + working tree')), installed in $root"
}

build a "$A"
build b "$B"

status=0
for ((r = 1; r <= REPEAT; r++)); do
	if ((r % 2 == 1)); then order="a b"; else order="b a"; fi
	for name in $order; do
		dir="$OUT/run$r-$name"
		echo "run $r, build $name: bash bench/pa_bench.sh ${BENCH_ARGS[*]} --pg-bin $OUT/$name/root$PG_PREFIX/bin --out $dir"
		if ! bash "$HERE/bench/pa_bench.sh" "${BENCH_ARGS[@]}" \
			--pg-bin "$OUT/$name/root$PG_PREFIX/bin" --out "$dir" >"$OUT/run$r-$name.log" 2>&1; then
			echo "  failed: see $OUT/run$r-$name.log"
			status=2
		fi
	done
done

# results.csv columns: mode,workers,txns,seconds,rate,...,status (13),...,applied_seconds (19)
{
	echo
	echo "ab_builds: a = $A, b = $B, $REPEAT runs each, alternating; pa_bench.sh ${BENCH_ARGS[*]}"
	printf '%-6s | %-14s | %-30s | %-30s | %8s | %s\n' build mode "applied s (each run)" "tx/s (each run)" "median" "b / a"
	for name in a b; do
		cat "$OUT"/run*-"$name"/results.csv 2>/dev/null | awk -F, -v name="$name" '
			$1 != "mode" && $13 == "ok" { key = $1 "," $2; app[key] = app[key] " " $19; tps[key] = tps[key] " " $5 }
			END { for (k in app) print name "|" k "|" app[k] "|" tps[k] }'
	done | sort | awk -F'|' '
		function median(s,   n, v, i, j, t) {
			n = split(s, v, " ")
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
			return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
		}
		{ m = median($3); med[$1, $2] = m; keys[$2] = 1
		  printf "%-6s | %-14s | %-30s | %-30s | %8.2f |\n", $1, $2, $3, $4, m }
		END { for (k in keys) if (((("a", k) in med)) && ((("b", k) in med)) && med["a", k] > 0)
			printf "%-6s | %-14s | %-30s | %-30s | %8s | %.3f\n", "b/a", k, "", "", "", med["b", k] / med["a", k] }'
	echo "(applied s: lower is better; b / a above 1 means b is slower)"
} | tee "$OUT/summary.txt"
exit "$status"
