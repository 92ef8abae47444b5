#!/usr/bin/env bash
# Every GPU check of the cuda backend in one script, for a machine with an NVIDIA GPU but no Java or Maven
# (see ../shared/gpu/README.md). Two halves:
#   scripts/gpu-check.sh prepare   here: a jlinked JRE, the cmc jar, the test jars and PyTorch's reference into .gpu/
#   scripts/gpu-check.sh run       there: parity tests on the GPU, cmc bench beside PyTorch; results in $OUT (or .gpu/out)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
  export JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
  mvn -q -B -DskipTests install
  (cd runtime && mvn -q -B jar:test-jar) && (cd compiler && mvn -q -B jar:test-jar)
  rm -rf .gpu /tmp/cmc-jre && mkdir -p .gpu
  "$JAVA_HOME/bin/jlink" --add-modules java.base,java.compiler,jdk.compiler,jdk.incubator.vector,jdk.unsupported,java.desktop,java.management,java.logging,java.xml \
      --strip-debug --no-man-pages --no-header-files --output /tmp/cmc-jre
  tar -C /tmp -cJf .gpu/jre.tar.xz cmc-jre
  cp cli/target/cmc.jar .gpu/cmc.jar
  cp runtime/target/cmc-runtime-*-tests.jar .gpu/runtime-tests.jar
  cp compiler/target/cmc-compiler-*-tests.jar .gpu/compiler-tests.jar
  cp ~/.m2/repository/org/junit/platform/junit-platform-console-standalone/1.14.1/junit-platform-console-standalone-1.14.1.jar .gpu/junit.jar
  cp ../shared/gpu/*.py .gpu/ 2>/dev/null || echo "gpu-check: ../shared/gpu/*.py not found; the PyTorch side will be skipped"
  du -sh .gpu
  ;;
run)
  out=${OUT:-.gpu/out}; mkdir -p "$out"
  tar -C /tmp -xJf .gpu/jre.tar.xz
  java=(/tmp/cmc-jre/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1 || true
  "${java[@]}" -jar .gpu/cmc.jar devices | tee "$out/devices.txt"
  # 1. Parity: every kernel against float64, 200 steps against the jvm curve, on the GPU (and in the simulator).
  "${java[@]}" -cp .gpu/junit.jar:.gpu/cmc.jar:.gpu/runtime-tests.jar:.gpu/compiler-tests.jar org.junit.platform.console.ConsoleLauncher execute \
      --select-class dev.cmc.runtime.ParityTest --select-class dev.cmc.runtime.train.CudaTrainingTest \
      --details=summary --disable-banner 2>&1 | tee "$out/parity.txt" | tail -25
  # 2. cmc on the card: sampling up to 1,048,576, the CT step at 256 and 4096 (CUDA graphs), per-kernel profile.
  for tb in 256 4096; do
    "${java[@]}" -jar .gpu/cmc.jar bench examples/seed_default.cm --backends cuda:0 --batch 4096,65536,1048576 \
        --train-batch "$tb" --seconds 6 --profile --json "$out/cmc_bench_train$tb.json" 2>/dev/null | tee "$out/cmc_bench_train$tb.txt"
  done
  # 2b. The same sampling with TF32 tensor-core GEMMs (target.precision = tf32), against PyTorch's tf32 figure.
  "${java[@]}" -jar .gpu/cmc.jar bench examples/seed_default.cm --set target.precision=tf32 --backends cuda:0 \
      --batch 4096,1048576 --train-batch 4096 --seconds 6 --json "$out/cmc_bench_tf32.json" 2>/dev/null | tee "$out/cmc_bench_tf32.txt"
  # 3. PyTorch on the same card in the same run: eager, compiled, and CUDA graphs (reduce-overhead).
  if [[ -f .gpu/torch_cm_bench.py ]]; then
    OUT="$out" timeout 300 python3 .gpu/torch_cm_bench.py > "$out/torch.txt" 2>&1 || echo "torch_cm_bench failed (see torch.txt)"
    OUT="$out" timeout 240 python3 .gpu/torch_cm_graphs.py > "$out/torch_graphs.txt" 2>&1 || echo "torch_cm_graphs failed (see torch_graphs.txt)"
    tail -5 "$out/torch.txt" "$out/torch_graphs.txt"
  fi
  ;;
*)
  echo "usage: scripts/gpu-check.sh prepare|run" >&2; exit 2 ;;
esac
