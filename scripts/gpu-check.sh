#!/usr/bin/env bash
# Every GPU check of the cuda backend in one script, for a machine with an NVIDIA GPU but no Java or Maven
# (see ../shared/gpu/README.md). Two halves:
#   scripts/gpu-check.sh prepare   here: a jlinked JRE, the cmc jar, the test jars and PyTorch's reference into .gpu/
#   scripts/gpu-check.sh run       there: cmc bench, parity tests on the GPU, PyTorch's peers; results in $OUT/gpu-out (or .gpu/gpu-out)
#   scripts/gpu-check.sh dryrun    here, after prepare: run's cmc bench stages on the fake driver (runtime/src/test/native/fake_cuda.c),
#                                  which runs no kernels but refuses calls that break the driver API's rules, so that a
#                                  stage that would fail on the GPU fails here first; its timings mean nothing
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
  cp scripts/gpu_torch_peer.py .gpu/
  cp ../shared/gpu/*.py .gpu/ 2>/dev/null || echo "gpu-check: ../shared/gpu/*.py not found; the PyTorch side will be skipped"
  du -sh .gpu
  ;;
run)
  # Stages run by priority, each with its own time limit and log, and none starts once it could overrun the
  # deadline (GPU_CHECK_SECONDS, default 520, for a run call of 560 s: the device tool cuts a command at 600 s). Logs are written
  # straight into $OUT/gpu-out, so what finished comes back even if the call is cut off.
  set +e
  out="${OUT:-.gpu}/gpu-out"; rm -rf "$out"; mkdir -p "$out"
  deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-520}))
  fits() {  # name, limit: whether a stage of this limit still fits before the deadline
    if (( SECONDS + $2 > deadline )); then echo "$1: skipped, $((deadline - SECONDS)) s left of the budget" | tee -a "$out/skipped.txt"; return 1; fi
  }
  tar -C /tmp -xJf .gpu/jre.tar.xz
  java=(/tmp/cmc-jre/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC)
  export CMC_CACHE=/tmp/cmc-cache CMC_DEBUG=1
  # The driver's JIT cache at its largest (4 GB), so a module an earlier stage compiled (the seed step's PTX is
  # 4 MB, about 7 s of ptxas) loads from the cache in a later one.
  export CUDA_CACHE_MAXSIZE=4294967296
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$out/gpu.txt" 2>&1
  cat "$out/gpu.txt"
  bench() {  # name, limit in seconds, then cmc bench arguments; retried kernel by kernel if the CUDA graph path fails
    local name=$1 limit=$2; shift 2
    fits "$name" "$limit" || return 0
    timeout "$limit" "${java[@]}" -jar .gpu/cmc.jar bench examples/seed_default.cm --backends cuda:0 --seconds 3 --json "$out/$name.json" "$@" \
        > "$out/$name.txt" 2> "$out/$name.err" \
      || { fits "$name without graphs" "$limit" && CMC_CUDA_GRAPHS=0 timeout "$limit" "${java[@]}" -jar .gpu/cmc.jar bench examples/seed_default.cm \
        --backends cuda:0 --seconds 3 --json "$out/$name-nographs.json" "$@" > "$out/$name-nographs.txt" 2> "$out/$name-nographs.err"; } \
      || echo "$name failed"
    grep -v "^WARNING" "$out/$name"*.txt | grep -v "  k_" ; tail -n 3 "$out/$name"*.err | grep -iv "warning\|^$\|==>"
  }
  # 1. What the issue's targets compare, first: cmc's fp32 (3xTF32 GEMMs by default) sampling up to 1,048,576
  #    and CT step at 4,096 and 256, with per-kernel profiles; tf32 sampling.
  bench fp32_train4096 60 --batch 1048576,4096,256 --train-batch 4096 --profile
  bench fp32_train256 40 --batch 256 --train-batch 256 --profile
  bench tf32 50 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  #    Each residual MLP block one kernel (LayerNorm, up, down; the hidden activation kept on chip) where the batch
  #    fills the GPU: the 1M sampler, its memory traffic from 56.6 to 11.5 kB a sample (a CT step at 4,096 keeps
  #    three kernels a block: 32 fused 128-row blocks would leave 100 SMs idle). Checked so far only by ptxas and
  #    the simulator; the likeliest path to the tf32 sampling target.
  CMC_CUDA_MLP=fused bench fused_tf32 40 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  CMC_CUDA_MLP=fused bench fused_fp32 40 --batch 1048576 --train-batch 4096 --profile
  # 2. PyTorch on the same card in the same run: its figures for the same comparisons.
  if [[ -f .gpu/torch_cm_bench.py && -z ${GPU_CHECK_DRY:-} ]] && fits torch 150; then
    OUT="$out" timeout 150 python3 .gpu/gpu_torch_peer.py > "$out/torch.txt" 2>&1 || echo "torch peer failed (see torch.txt)"
    grep -v '^ \|^[{}]\|Warning\|warn' "$out/torch.txt" | tail -8
  fi
  # 3. Parity on the GPU: every kernel against float64 (fp32, tf32, 3xTF32, bf16, wide tiles), each GEMM tiling and
  #    split-K case alone (GemmKernelTest, on the card beside the simulator), 200 steps against the jvm curve. Then
  #    the fused MLP blocks (MlpKernelTest: samplers against float64 and against the card's unfused kernels, a CT
  #    step with fused target blocks against the unfused step) and the wgmma rows, each in a JVM of its own: a
  #    kernel fault would leave the CUDA context unusable for every test after it.
  junit() {  # name, limit, then ConsoleLauncher selectors
    local name=$1 limit=$2; shift 2
    [[ -z ${GPU_CHECK_DRY:-} ]] || return 0   # no parity without kernels that run
    fits "$name" "$limit" || return 0
    timeout "$limit" "${java[@]}" -Dcmc.parity.backends=cuda: "${props[@]}" -cp .gpu/junit.jar:.gpu/cmc.jar:.gpu/runtime-tests.jar:.gpu/compiler-tests.jar \
        org.junit.platform.console.ConsoleLauncher execute "$@" --details=tree --disable-banner > "$out/$name.txt" 2>&1 \
      || echo "$name: failures or timeout (see $name.txt)"
    grep -E "tests (successful|failed|aborted)|✘" "$out/$name.txt" | cut -c1-300 | head -20
  }
  gemm=dev.cmc.runtime.cuda.GemmKernelTest
  props=(-Dcmc.parity.wgmma=none)
  junit parity 150 --select-class dev.cmc.runtime.ParityTest --select-class dev.cmc.runtime.SamplingTest --select-method dev.cmc.runtime.train.CudaTrainingTest#eachGpuFollowsTheJvmLossCurve \
      --select-method "$gemm#oneGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)" \
      --select-method "$gemm#wideTileGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)" \
      --select-method "$gemm#fixedRowGemmWithLongKSplitsK(dev.cmc.render.PtxRenderer\$Matmul,int,int)" \
      --select-method "$gemm#splitGemmsOfOneProgramKeepTheirOwnCounters"
  junit parity_fused 90 --select-class dev.cmc.runtime.MlpKernelTest
  #    Hopper's wgmma (sm_90a; NN GEMMs of 128+ columns as two warpgroups of m64n128k8), timed, then its parity.
  CMC_CUDA_TILES=wgmma bench wgmma 50 --batch 1048576,4096 --train-batch 4096 --profile
  CMC_CUDA_TILES=wgmma bench wgmma_tf32 40 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  CMC_CUDA_TILES=wgmma CMC_CUDA_MLP=fused bench wgmma_fused_tf32 40 --set target.precision=tf32 --batch 1048576 --train-batch 4096 --profile
  props=(-Dcmc.parity.wgmma=only)
  junit parity_wgmma 60 --select-class dev.cmc.runtime.ParityTest \
      --select-method "$gemm#wgmmaTileGemmAgreesWithFloat64(dev.cmc.render.PtxRenderer\$Matmul,boolean,int,int,int)"
  # 4. The alternatives, as time allows: 128×128 tiles (2-stage pipeline; 3xTF32 in 8 warps of 64×32, tf32 in 4 of
  #    64×64) against the default 128×64,
  #    the GEMMs on the FMA units, the batch-256 graph captured on one stream, bf16.
  CMC_CUDA_TILES=wide bench wide 50 --batch 1048576,4096 --train-batch 4096 --profile
  CMC_CUDA_TILES=wide bench wide_tf32 40 --set target.precision=tf32 --batch 1048576 --train-batch 4096
  CMC_CUDA_FP32_MATMUL=fma bench fma 50 --batch 1048576,4096 --train-batch 4096
  CMC_CUDA_STREAMS=1 bench fp32_train256_one_stream 30 --batch 256 --train-batch 256
  bench bf16 40 --set target.precision=bf16 --batch 1048576 --train-batch 4096
  ;;
dryrun)
  [[ -f .gpu/cmc.jar ]] || { echo "gpu-check: run 'scripts/gpu-check.sh prepare' first" >&2; exit 2; }
  fake=/tmp/cmc-fake-cuda; mkdir -p $fake; rm -f $fake/driver.log
  cc -std=c11 -O1 -shared -fPIC -o $fake/libcuda.so.1 runtime/src/test/native/fake_cuda.c
  CMC_CUDA_LIBRARY=$fake/libcuda.so.1 CMC_FAKE_CUDA_LOG=$fake/driver.log GPU_CHECK_DRY=1 OUT=$fake GPU_CHECK_SECONDS=${GPU_CHECK_SECONDS:-900} \
      "$0" run | tee $fake/run.txt
  if grep '^error' $fake/driver.log || grep 'failed' $fake/run.txt; then
    echo "gpu-check dryrun: FAILED, see above (driver log: $fake/driver.log, outputs: $fake/gpu-out)"; exit 1
  fi
  echo "gpu-check dryrun: $(grep -c '^launch' $fake/driver.log) launches and $(grep -c '^graph launch' $fake/driver.log) graphs launched, none refused"
  ;;
*)
  echo "usage: scripts/gpu-check.sh prepare|run|dryrun" >&2; exit 2 ;;
esac
