# Sourced by bench/*.sh and scripts/bench.sh: one summary of every ratio.
# Each benchmark adds its figures to $BENCH_WORK/summary.d/<bench>.tsv, one
# line per figure: bench, measure, value, goal ("<= 1.3", ">= 0.8" or "-").
# scripts/bench.sh prints them all as one table at the end, so two runs can
# be compared line by line.

summary_add() {   # bench measure value goal
    mkdir -p "$BENCH_WORK/summary.d"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$BENCH_WORK/summary.d/$1.tsv"
}

summary_print() {
    local files=("$BENCH_WORK"/summary.d/*.tsv)
    [ -e "${files[0]}" ] || { echo "(no benchmark reported a figure)"; return; }
    cat "${files[@]}" | awk -F'\t' '
        function verdict(v, g,   op, x) {
            if (g == "-" || g == "" || v == "" || v !~ /^-?[0-9.]+$/) return "";
            split(g, p, " "); op = p[1]; x = p[2] + 0;
            if (op == "<=") return (v + 0 <= x) ? "met" : "NOT MET";
            if (op == ">=") return (v + 0 >= x) ? "met" : "NOT MET";
            return "";
        }
        BEGIN { printf "%-14s %-58s %12s %10s  %s\n", "benchmark", "measure", "value", "goal", "";
                printf "%-14s %-58s %12s %10s  %s\n", "---------", "-------", "-----", "----", "" }
        { printf "%-14s %-58s %12s %10s  %s\n", $1, $2, $3, $4, verdict($3, $4) }'
}
