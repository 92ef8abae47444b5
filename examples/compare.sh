#!/usr/bin/env bash
# The comparison table of the README: on each data set, an EDM teacher (Heun-18), CD from it, CT and iCT,
# each trained from scratch, then scored against held-out data. Writes runs/compare/table.md.
# Usage: examples/compare.sh [STEPS_2D] [STEPS_64D] [DATASETS...]   (defaults: 4000 3000 swiss_roll checkerboard glyphs8x8)
set -euo pipefail
cd "$(dirname "$0")/.."
steps2=${1:-4000}; steps64=${2:-3000}; shift $(( $# > 2 ? 2 : $# )) || true
datasets=("$@"); [[ ${#datasets[@]} -gt 0 ]] || datasets=(swiss_roll checkerboard glyphs8x8)
out=runs/compare
mkdir -p "$out"
table="$out/table.md"
{
  echo "| data | model | network evaluations per sample | sliced Wasserstein | energy distance | sampling 2,000 (ms) | data vs data SW | training |"
  echo "|---|---|---|---|---|---|---|---|"
} > "$table.tmp"
for ds in "${datasets[@]}"; do
  if [[ $ds == glyphs8x8 ]]; then dim=64; hidden=256; layers=4; steps=$steps64; lr=4e-4; else dim=2; hidden=128; layers=3; steps=$steps2; lr=1e-3; fi
  dir="$out/$ds"; mkdir -p "$dir"
  for method in edm cd ct ict; do
    spec="$dir/$method.cm"
    teacher=""; [[ $method == cd ]] && teacher="teacher = \"$dir/edm/checkpoint.safetensors\";"
    cat > "$spec" <<SPEC
model ${ds}_${method} { input_dim = $dim; hidden_size = $hidden; num_layers = $layers; }
schedule { n_steps = 18; }
train { method = $method; $teacher steps = $steps; batch_size = 256; lr = $lr; ema_decay = 0.999; seed = 1; checkpoint_every = 0; }
data { source = "builtin:$ds"; samples = 20000; }
SPEC
    start=$(date +%s)
    ./cmc train "$spec" --out "$dir/$method" > "$dir/$method.log" 2>&1 || { echo "compare: $method on $ds failed, see $dir/$method.log" >&2; exit 1; }
    secs=$(( $(date +%s) - start ))
    floor=$(grep '^data_vs_data' "$dir/$method/metrics.csv" | cut -d, -f2)
    grep -vE '^(samples|data_vs_data|untrained)' "$dir/$method/metrics.csv" | while IFS=, read -r name sw ed ms; do
      case "$name" in heun-18*) evals=35;; euler-18*) evals=18;; 1-step) evals=1;; 2-step) evals=2;; *) evals="?";; esac
      label=$( [[ $method == edm ]] && echo "EDM teacher, ${name%%_*}" || echo "${method^^} ${name}" )
      printf '| %s | %s | %s | %.4f | %.4f | %.0f | %.4f | %d steps, %d s |\n' "$ds" "$label" "$evals" "$sw" "$ed" "$ms" "$floor" "$steps" "$secs" >> "$table.tmp"
    done
    echo "compare: $ds $method done in ${secs}s" >&2
  done
done
mv "$table.tmp" "$table"
echo "wrote $table"
